"""English text normalisation for word/character error rates.

A port of OpenAI Whisper's `EnglishTextNormalizer` (whisper/normalizers/english.py and basic.py,
MIT License, Copyright (c) 2022 OpenAI), so that case, punctuation, numbers written as digits or
words ("twenty five" = "25", "3rd" = "third"), currency ("twelve dollars and fifty cents" =
"$12.50"), contractions ("won't" = "will not"), titles ("Mr" = "mister") and British/American
spelling ("colour" = "color") are not counted as recognition errors. Changes from upstream, marked
`asn:` below: no more_itertools dependency; "$12 50" (as in "twelve dollars fifty") becomes
"$12.50"; "dollars 12.50" (an ASR habit) becomes "$12.50"; a few ASR spellings of the same thing.
Compounds and split numbers ("sea shells" / "seashells", "9 30" / "930") are handled by the
alignment in `wer.py`, which matches word groups whose letters agree with spaces removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from fractions import Fraction
from functools import lru_cache

from audiosubnet.scoring._spelling import SPELLING

ADDITIONAL_DIACRITICS = {
    "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS", "đ": "d", "Đ": "D",
    "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L",
}


def remove_symbols_and_diacritics(s: str, keep: str = "") -> str:
    """Replace markers, symbols and punctuation with a space and drop diacritics."""
    out = []
    for c in unicodedata.normalize("NFKD", s):
        if c in keep:
            out.append(c)
        elif c in ADDITIONAL_DIACRITICS:
            out.append(ADDITIONAL_DIACRITICS[c])
        elif unicodedata.category(c) == "Mn":
            continue
        elif unicodedata.category(c)[0] in "MSP":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


_ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_NUMERIC = re.compile(r"^\d+(\.\d+)?$")


class EnglishNumberNormalizer:
    """Spelled-out numbers -> arabic numbers (commas removed, suffixes kept: 1960s, 274th; currency
    words after a number become a prefix symbol: "$20"; "one oh one" -> "101")."""

    def __init__(self) -> None:
        self.zeros = {"o", "oh", "zero"}
        self.ones = {name: i for i, name in enumerate(_ONES, start=1)}
        self.ones_plural = {"sixes" if n == "six" else n + "s": (v, "s") for n, v in self.ones.items()}
        self.ones_ordinal = {
            "zeroth": (0, "th"), "first": (1, "st"), "second": (2, "nd"), "third": (3, "rd"), "fifth": (5, "th"),
            "twelfth": (12, "th"),
            **{n + ("h" if n.endswith("t") else "th"): (v, "th") for n, v in self.ones.items()
               if v > 3 and v != 5 and v != 12},
        }
        self.ones_suffixed = {**self.ones_plural, **self.ones_ordinal}
        self.tens = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                     "eighty": 80, "ninety": 90}
        self.tens_plural = {n.replace("y", "ies"): (v, "s") for n, v in self.tens.items()}
        self.tens_ordinal = {n.replace("y", "ieth"): (v, "th") for n, v in self.tens.items()}
        self.tens_suffixed = {**self.tens_plural, **self.tens_ordinal}
        self.multipliers = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
                            "trillion": 1_000_000_000_000, "quadrillion": 10**15, "quintillion": 10**18,
                            "sextillion": 10**21, "septillion": 10**24, "octillion": 10**27, "nonillion": 10**30,
                            "decillion": 10**33}
        self.multipliers_plural = {n + "s": (v, "s") for n, v in self.multipliers.items()}
        self.multipliers_ordinal = {n + "th": (v, "th") for n, v in self.multipliers.items()}
        self.multipliers_suffixed = {**self.multipliers_plural, **self.multipliers_ordinal}
        self.decimals = {*self.ones, *self.tens, *self.zeros}
        self.preceding_prefixers = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}
        self.following_prefixers = {"pound": "£", "pounds": "£", "euro": "€", "euros": "€", "dollar": "$",
                                    "dollars": "$", "cent": "¢", "cents": "¢"}
        self.prefixes = set(self.preceding_prefixers.values()) | set(self.following_prefixers.values())
        self.suffixers: dict[str, str | dict[str, str]] = {"per": {"cent": "%"}, "percent": "%"}
        self.specials = {"and", "double", "triple", "point"}
        self.words = {key for mapping in [self.zeros, self.ones, self.ones_suffixed, self.tens, self.tens_suffixed,
                                          self.multipliers, self.multipliers_suffixed, self.preceding_prefixers,
                                          self.following_prefixers, self.suffixers, self.specials]
                      for key in mapping}

    def process_words(self, words: list[str]) -> Iterator[str]:  # noqa: C901 (a faithful port)
        prefix: str | None = None
        value: str | int | None = None
        skip = False

        def to_fraction(s: str | int) -> Fraction | None:
            try:
                return Fraction(s)
            except (ValueError, ZeroDivisionError):
                return None

        def output(result: str | int) -> str:
            nonlocal prefix, value
            result = str(result)
            if prefix is not None:
                result = prefix + result
            value = None
            prefix = None
            return result

        if not words:
            return
        padded: list[str | None] = [None, *words, None]
        for idx in range(1, len(padded) - 1):  # asn: windowed(…, 3) without more_itertools
            prev, current, nxt = padded[idx - 1], padded[idx], padded[idx + 1]
            assert current is not None
            if skip:
                skip = False
                continue
            next_is_numeric = nxt is not None and _NUMERIC.match(nxt)
            has_prefix = current[0] in self.prefixes
            current_without_prefix = current[1:] if has_prefix else current
            if _NUMERIC.match(current_without_prefix):
                f = to_fraction(current_without_prefix)
                if f is None:
                    yield output(current)
                    continue
                if value is not None:
                    if isinstance(value, str) and value.endswith("."):
                        value = str(value) + str(current)  # decimals / ip address components
                        continue
                    yield output(value)
                prefix = current[0] if has_prefix else prefix
                value = f.numerator if f.denominator == 1 else current_without_prefix
            elif current not in self.words:
                if value is not None:
                    yield output(value)
                yield output(current)
            elif current in self.zeros:
                value = str(value or "") + "0"
            elif current in self.ones:
                ones = self.ones[current]
                if value is None:
                    value = ones
                elif isinstance(value, str) or prev in self.ones:
                    tail = str(value)[:-1] if prev in self.tens and ones < 10 else str(value)
                    value = tail + str(ones)
                elif ones < 10:
                    value = value + ones if value % 10 == 0 else str(value) + str(ones)
                else:
                    value = value + ones if value % 100 == 0 else str(value) + str(ones)
            elif current in self.ones_suffixed:
                ones, suffix = self.ones_suffixed[current]
                if value is None:
                    yield output(str(ones) + suffix)
                elif isinstance(value, str) or prev in self.ones:
                    if prev in self.tens and ones < 10:
                        yield output(str(value)[:-1] + str(ones) + suffix)
                    else:
                        yield output(str(value) + str(ones) + suffix)
                elif ones < 10:
                    yield output(str(value + ones if value % 10 == 0 else str(value) + str(ones)) + suffix)
                else:
                    yield output(str(value + ones if value % 100 == 0 else str(value) + str(ones)) + suffix)
                value = None
            elif current in self.tens:
                tens = self.tens[current]
                if value is None:
                    value = tens
                elif isinstance(value, str):
                    value = str(value) + str(tens)
                else:
                    value = value + tens if value % 100 == 0 else str(value) + str(tens)
            elif current in self.tens_suffixed:
                tens, suffix = self.tens_suffixed[current]
                if value is None:
                    yield output(str(tens) + suffix)
                elif isinstance(value, str):
                    yield output(str(value) + str(tens) + suffix)
                else:
                    yield output(str(value + tens if value % 100 == 0 else str(value) + str(tens)) + suffix)
            elif current in self.multipliers:
                multiplier = self.multipliers[current]
                if value is None:
                    value = multiplier
                elif isinstance(value, str) or value == 0:
                    f = to_fraction(value)
                    p = f * multiplier if f is not None else None
                    if p is not None and p.denominator == 1:
                        value = p.numerator
                    else:
                        yield output(value)
                        value = multiplier
                else:
                    before = value // 1000 * 1000
                    residual = value % 1000
                    value = before + residual * multiplier
            elif current in self.multipliers_suffixed:
                multiplier, suffix = self.multipliers_suffixed[current]
                if value is None:
                    yield output(str(multiplier) + suffix)
                elif isinstance(value, str):
                    f = to_fraction(value)
                    p = f * multiplier if f is not None else None
                    if p is not None and p.denominator == 1:
                        yield output(str(p.numerator) + suffix)
                    else:
                        yield output(value)
                        yield output(str(multiplier) + suffix)
                else:
                    before = value // 1000 * 1000
                    residual = value % 1000
                    value = before + residual * multiplier
                    yield output(str(value) + suffix)
                value = None
            elif current in self.preceding_prefixers:
                if value is not None:
                    yield output(value)
                if nxt in self.words or next_is_numeric:
                    prefix = self.preceding_prefixers[current]
                else:
                    yield output(current)
            elif current in self.following_prefixers:
                if value is not None:
                    prefix = self.following_prefixers[current]
                    yield output(value)
                else:
                    yield output(current)
            elif current in self.suffixers:
                if value is not None:
                    suffixer = self.suffixers[current]
                    if isinstance(suffixer, dict):
                        if nxt in suffixer:
                            yield output(str(value) + suffixer[nxt])
                            skip = True
                        else:
                            yield output(value)
                            yield output(current)
                    else:
                        yield output(str(value) + suffixer)
                else:
                    yield output(current)
            elif current in self.specials:
                if nxt not in self.words and not next_is_numeric:
                    if value is not None:
                        yield output(value)
                    yield output(current)
                elif current == "and":
                    if prev not in self.multipliers and value is not None:  # "and" after hundreds... is dropped
                        yield output(value)
                    if prev not in self.multipliers:
                        yield output(current)
                elif current in ("double", "triple"):
                    if nxt in self.ones or nxt in self.zeros:
                        repeats = 2 if current == "double" else 3
                        ones = self.ones.get(nxt, 0)
                        value = str(value or "") + str(ones) * repeats
                        skip = True
                    else:
                        if value is not None:
                            yield output(value)
                        yield output(current)
                elif current == "point" and (nxt in self.decimals or next_is_numeric):
                    value = str(value or "") + "."  # ("point" before other number words is dropped)
            else:  # unreachable: every word of self.words is handled above
                yield output(current)
        if value is not None:
            yield output(value)

    def preprocess(self, s: str) -> str:
        results = []  # "<number> and a half" -> "<number> point five"
        segments = re.split(r"\band\s+a\s+half\b", s)
        for i, segment in enumerate(segments):
            if not segment.strip():
                continue
            results.append(segment)
            if i != len(segments) - 1:
                last_word = segment.rsplit(maxsplit=2)[-1]
                results.append("point five" if last_word in self.decimals or last_word in self.multipliers
                               else "and a half")
        s = " ".join(results)
        s = re.sub(r"([a-z])([0-9])", r"\1 \2", s)  # space at number/letter boundaries
        s = re.sub(r"([0-9])([a-z])", r"\1 \2", s)
        s = re.sub(r"([0-9])\s+(st|nd|rd|th|s)\b", r"\1\2", s)  # but keep suffixes
        return s

    def postprocess(self, s: str) -> str:
        def combine_cents(m: re.Match[str]) -> str:
            try:
                return f"{m.group(1)}{m.group(2)}.{int(m.group(3)):02d}"
            except ValueError:
                return m.group(0)

        def extract_cents(m: re.Match[str]) -> str:
            try:
                return f"¢{int(m.group(1))}"
            except ValueError:
                return m.group(0)

        s = re.sub(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b", combine_cents, s)  # "$2 and ¢7" -> "$2.07"
        s = re.sub(r"([€£$])([0-9]+) ([0-9]{2})(?![0-9.%])", r"\1\2.\3", s)  # asn: "$12 50" -> "$12.50"
        s = re.sub(r"[€£$]0.([0-9]{1,2})\b", extract_cents, s)
        s = re.sub(r"\b1(s?)\b", r"one\1", s)  # "one(s)" rather than "1(s)"
        return s

    def __call__(self, s: str) -> str:
        s = self.preprocess(s)
        s = " ".join(w for w in self.process_words(s.split()) if w is not None)
        return self.postprocess(s)


class EnglishTextNormalizer:
    """Whisper's English normaliser: lower case, no punctuation, standard numbers and spellings."""

    ignore_patterns = r"\b(hmm|mm|mhm|mmm|uh|um)\b"
    replacers = {
        r"\bwon't\b": "will not", r"\bcan't\b": "can not", r"\blet's\b": "let us", r"\bain't\b": "aint",
        r"\by'all\b": "you all", r"\bwanna\b": "want to", r"\bgotta\b": "got to", r"\bgonna\b": "going to",
        r"\bi'ma\b": "i am going to", r"\bimma\b": "i am going to", r"\bwoulda\b": "would have",
        r"\bcoulda\b": "could have", r"\bshoulda\b": "should have", r"\bma'am\b": "madam",
        r"\bmr\b": "mister ", r"\bmrs\b": "missus ", r"\bst\b": "saint ", r"\bdr\b": "doctor ",
        r"\bprof\b": "professor ", r"\bcapt\b": "captain ", r"\bgov\b": "governor ", r"\bald\b": "alderman ",
        r"\bgen\b": "general ", r"\bsen\b": "senator ", r"\brep\b": "representative ", r"\bpres\b": "president ",
        r"\brev\b": "reverend ", r"\bhon\b": "honorable ", r"\basst\b": "assistant ", r"\bassoc\b": "associate ",
        r"\blt\b": "lieutenant ", r"\bcol\b": "colonel ", r"\bjr\b": "junior ", r"\bsr\b": "senior ",
        r"\besq\b": "esquire ",
        r"'d been\b": " had been", r"'s been\b": " has been", r"'d gone\b": " had gone",
        r"'s gone\b": " has gone", r"'d done\b": " had done", r"'s got\b": " has got",
        r"n't\b": " not", r"'re\b": " are", r"'s\b": " is", r"'d\b": " would", r"'ll\b": " will",
        r"'t\b": " not", r"'ve\b": " have", r"'m\b": " am",
    }
    # asn: ASR spellings of the same words (applied after the above)
    extra = {r"\bok\b": "okay", r"\bcannot\b": "can not", r"\ball right\b": "alright"}

    def __init__(self) -> None:
        self.standardize_numbers = EnglishNumberNormalizer()
        self._replacers = [(re.compile(p), r) for p, r in {**self.replacers, **self.extra}.items()]

    def __call__(self, s: str) -> str:
        s = s.lower()
        s = s.replace("’", "'").replace("‘", "'")  # asn: typographic apostrophes
        s = re.sub(r"[<\[][^>\]]*[>\]]", "", s)  # words between brackets
        s = re.sub(r"\(([^)]+?)\)", "", s)  # words between parentheses
        s = re.sub(self.ignore_patterns, "", s)
        s = re.sub(r"\s+'", "'", s)
        for pattern, replacement in self._replacers:
            s = pattern.sub(replacement, s)
        s = re.sub(r"(\d),(\d)", r"\1\2", s)  # commas between digits
        s = re.sub(r"\.([^0-9]|$)", r" \1", s)  # periods not followed by numbers
        s = remove_symbols_and_diacritics(s, keep=".%$¢€£")
        s = self.standardize_numbers(s)
        s = " ".join(SPELLING.get(w, w) for w in s.split())
        s = re.sub(r"\b(?:dollars?) ([0-9])", r"$\1", s)  # asn: "dollar 12.50" -> "$12.50"
        s = re.sub(r"\b(?:euros?) ([0-9])", r"€\1", s)
        s = re.sub(r"\b(?:pounds?) ([0-9])", r"£\1", s)
        s = re.sub(r"[.$¢€£]([^0-9])", r" \1", s)  # prefix/suffix symbols not next to numbers
        s = re.sub(r"([^0-9])%", r"\1 ", s)
        s = re.sub(r"[.$¢€£%]$", "", s.strip())
        return re.sub(r"\s+", " ", s).strip()


_normalizer: EnglishTextNormalizer | None = None


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Normalised English text for WER (cached: prompts repeat across miners)."""
    global _normalizer
    if _normalizer is None:
        _normalizer = EnglishTextNormalizer()
    try:
        return _normalizer(text or "")
    except Exception:  # never let an odd string break scoring: fall back to the basic cleanup
        return " ".join(remove_symbols_and_diacritics((text or "").lower()).split())
