"""What text an engine is given, the same for every engine.

- `prepare(text)`: NFC-normalised, full-width letters and ligatures made plain (NFKC for those
  only: ½, x², ™ keep their meaning), emoji and pictographic symbols (Unicode category So, with
  their variation selectors, joiners and skin-tone modifiers) dropped, whitespace collapsed. Currency, math,
  punctuation and the few symbols that are words (° © ® ™ №) are left for the engine to verbalise
  ("$12.50", "3 + 4", "50%", "20°C").
- `scripts_of(text)`: the writing systems (ISO 15924 codes: Latn, Cyrl, Hani...) of its letters.
- `scripts_for_language(code)`: the scripts a language is written in ("en_US" -> {Latn}); an
  engine declares the languages it speaks (`Capabilities.languages`) and, from them or explicitly
  (`Capabilities.scripts`), the scripts it can read. Letters in any other script are an error for
  that request (`SpeechEngine.check`), or dropped with a warning where the user allows mixed text
  (`drop_scripts`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

_DROP_CATEGORIES = {"So", "Cs", "Co", "Cn"}
_DROP_CHARS = {"\u200d", "\u20e3"}  # zero-width joiner (emoji sequences), combining keycap
#: symbols of category So that are words, not pictures: engines say them ("20 degrees", "copyright")
_SPOKEN_SYMBOLS = set("°©®™№℠℗")
_NAME_SCRIPT = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARABIC": "Arab", "HEBREW": "Hebr", "CJK": "Hani",
    "HIRAGANA": "Hira", "KATAKANA": "Kana", "HANGUL": "Hang", "DEVANAGARI": "Deva", "BENGALI": "Beng",
    "TAMIL": "Taml", "TELUGU": "Telu", "THAI": "Thai", "GEORGIAN": "Geor", "ARMENIAN": "Armn",
    "ETHIOPIC": "Ethi", "GUJARATI": "Gujr", "GURMUKHI": "Guru", "KANNADA": "Knda", "MALAYALAM": "Mlym",
    "SINHALA": "Sinh", "KHMER": "Khmr", "LAO": "Laoo", "MYANMAR": "Mymr", "TIBETAN": "Tibt",
    "BOPOMOFO": "Bopo", "YI": "Yiii", "MONGOLIAN": "Mong", "ORIYA": "Orya", "SYRIAC": "Syrc", "THAANA": "Thaa",
}
SCRIPT_NAMES = {"Latn": "Latin", "Cyrl": "Cyrillic", "Grek": "Greek", "Arab": "Arabic", "Hebr": "Hebrew",
                "Hani": "Chinese (Han)", "Hira": "Hiragana", "Kana": "Katakana", "Hang": "Hangul (Korean)",
                "Deva": "Devanagari", "Thai": "Thai", "Geor": "Georgian", "Armn": "Armenian"}
# languages (ISO 639-1 or -3, as engines name them) not written in Latin script
_LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ru", "rus", "uk", "ukr", "be", "bel", "bg", "bul", "sr", "srp", "mk", "mkd", "kk", "kaz",
                     "ky", "kir", "tg", "tgk", "mn", "mon", "tt", "tat", "ba", "bak", "cv", "chv"), ("Cyrl",)),
    **dict.fromkeys(("el", "ell", "gre"), ("Grek",)),
    **dict.fromkeys(("ar", "ara", "fa", "fas", "per", "ur", "urd", "ps", "pus", "ug", "uig", "sd", "snd",
                     "ckb"), ("Arab",)),
    **dict.fromkeys(("he", "heb", "yi", "yid"), ("Hebr",)),
    **dict.fromkeys(("zh", "zho", "chi", "cmn", "yue", "nan", "hak", "wuu"), ("Hani", "Bopo")),
    **dict.fromkeys(("ja", "jpn"), ("Hani", "Hira", "Kana")),
    **dict.fromkeys(("ko", "kor"), ("Hang", "Hani")),
    **dict.fromkeys(("hi", "hin", "mr", "mar", "ne", "nep", "sa", "san", "mai", "bho", "awa", "mag"), ("Deva",)),
    **dict.fromkeys(("bn", "ben", "as", "asm"), ("Beng",)),
    **dict.fromkeys(("ta", "tam"), ("Taml",)), **dict.fromkeys(("te", "tel"), ("Telu",)),
    **dict.fromkeys(("kn", "kan"), ("Knda",)), **dict.fromkeys(("ml", "mal"), ("Mlym",)),
    **dict.fromkeys(("gu", "guj"), ("Gujr",)), **dict.fromkeys(("pa", "pan"), ("Guru",)),
    **dict.fromkeys(("or", "ori", "ory"), ("Orya",)), **dict.fromkeys(("si", "sin"), ("Sinh",)),
    **dict.fromkeys(("th", "tha"), ("Thai",)), **dict.fromkeys(("lo", "lao"), ("Laoo",)),
    **dict.fromkeys(("km", "khm"), ("Khmr",)), **dict.fromkeys(("my", "mya", "bur"), ("Mymr",)),
    **dict.fromkeys(("ka", "kat", "geo"), ("Geor",)), **dict.fromkeys(("hy", "hye", "arm"), ("Armn",)),
    **dict.fromkeys(("am", "amh", "ti", "tir"), ("Ethi",)), **dict.fromkeys(("bo", "bod", "tib"), ("Tibt",)),
    **dict.fromkeys(("dv", "div"), ("Thaa",)),
}


def prepare(text: str) -> str:
    """The text as engines get it: NFKC, no emoji or pictographic symbols, whitespace collapsed."""
    t = unicodedata.normalize("NFC", text)
    t = "".join(" " if _dropped(ch) else unicodedata.normalize("NFKC", ch) if _compat(ch) else ch for ch in t)
    return " ".join(t.split())


def _compat(ch: str) -> bool:
    """Full-width/half-width forms and ligatures: plain letters in disguise (½, ², ™ keep their meaning)."""
    return "\uff00" <= ch <= "\uffef" or "\ufb00" <= ch <= "\ufb4f"


def _dropped(ch: str) -> bool:
    if ch in _DROP_CHARS or "\ufe00" <= ch <= "\ufe0f" or "\U0001f3fb" <= ch <= "\U0001f3ff":
        return True
    return unicodedata.category(ch) in _DROP_CATEGORIES and ch not in _SPOKEN_SYMBOLS


@lru_cache(maxsize=4096)
def script_of(ch: str) -> str | None:
    """ISO 15924 code of a letter's script; None for anything that is not a letter (or not tracked)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    for word in unicodedata.name(ch, "").split():
        if word in _NAME_SCRIPT:
            return _NAME_SCRIPT[word]
    return None  # a script we do not track (modifier letters, rare scripts): not checked


def scripts_of(text: str) -> Counter[str]:
    """Letters per script in `text`."""
    return Counter(s for ch in text if (s := script_of(ch)) is not None)


def scripts_for_language(code: str) -> tuple[str, ...] | None:
    """Scripts a language is written in ('en_US' -> ('Latn',)); None for '*' or an unknown code."""
    base = code.replace("_", "-").split("-")[0].strip().lower()
    if not base or base in ("*", "und", "mul", "zxx"):
        return None
    if base in _LANGUAGE_SCRIPTS:
        return _LANGUAGE_SCRIPTS[base]
    return ("Latn",) if base.isalpha() and len(base) in (2, 3) else None


def scripts_for_languages(codes: tuple[str, ...]) -> tuple[str, ...] | None:
    """The union over languages; None when any of them is unknown or '*' (anything goes)."""
    out: list[str] = []
    for c in codes:
        s = scripts_for_language(c)
        if s is None:
            return None
        out += [x for x in s if x not in out]
    return tuple(out) or None


def unsupported(text: str, scripts: tuple[str, ...] | None) -> Counter[str]:
    """Letters of `text` in scripts outside `scripts` (empty when `scripts` is None: no limit)."""
    if not scripts:
        return Counter()
    return Counter({s: n for s, n in scripts_of(text).items() if s not in scripts})


def describe(counts: Counter[str]) -> str:
    return ", ".join(f"{SCRIPT_NAMES.get(s, s)} ({n} letter{'s' if n != 1 else ''})" for s, n in counts.most_common())


def drop_scripts(text: str, scripts: tuple[str, ...] | None) -> str:
    """`text` without the letters (and their marks) of scripts outside `scripts`."""
    if not scripts:
        return text
    out, dropping = [], False
    for ch in text:
        s = script_of(ch)
        if s is not None:
            dropping = s not in scripts
        elif not unicodedata.category(ch).startswith("M"):
            dropping = False
        out.append(" " if dropping else ch)
    return " ".join("".join(out).split())


def drop_unreadable(text: str, scripts: tuple[str, ...] | None) -> tuple[str, Counter[str]]:
    """For `--allow-mixed`: (`text` without the letters outside `scripts`, what was dropped). When
    nothing readable would be left, the text is returned as it is (the engine then refuses it, saying why)."""
    t = prepare(text)
    foreign = unsupported(t, scripts)
    if not foreign:
        return text, Counter()
    kept = drop_scripts(t, scripts)
    if not any(ch.isalnum() for ch in kept):
        return text, Counter()
    return kept, foreign
