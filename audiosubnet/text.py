"""Splitting long text into pieces an engine speaks well: sentences first, then clauses, then words.

    split_sentences("Dr. Smith paid $3.50. Then he left!")  -> ["Dr. Smith paid $3.50.", "Then he left!"]
    chunk_text(text, max_chars=400)                         -> sentences, none longer than 400 characters
    chunk_text(text, max_chars=400, pack=True)              -> as few pieces of whole sentences as fit

Used by `asn serve` (streaming: one chunk per sentence, the first one spoken first) and by `asn tts say` /
`asn tts batch` (a text longer than an engine's `max_text_chars` is spoken in pieces and joined).

A sentence ends at `.`, `!`, `?`, `…` (or their CJK forms), optionally followed by closing quotes or
brackets, then whitespace (or, for CJK, nothing). A period does not end a sentence after a known
abbreviation (Mr., e.g., etc. before a lower-case word), a single initial (J. R. R. Tolkien), inside a number
(3.14, 1.5.2) or in a dotted name (example.com). Line breaks with a blank line between end a sentence too.
"""

from __future__ import annotations

import re

# Titles and short forms after which a period rarely ends a sentence (compared lower-cased, without the dot).
_TITLES = frozenset(["mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "col", "lt", "sgt", "capt",
                     "rev", "hon", "gov", "sen", "rep", "pres", "fr", "messrs", "mme"])
# Forms that end a sentence only when a capitalised word follows (they often end one anyway).
_SOFT = frozenset(["etc", "vs", "approx", "dept", "est", "fig", "no", "vol", "ch", "pp", "ed", "eds", "inc", "ltd",
                   "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
                   "mon", "tue", "wed", "thu", "fri", "sat", "sun", "al", "cf", "ca"])
_DOTTED = re.compile(r"(?:[A-Za-z]\.){2,}$")  # e.g.  i.e.  U.S.  a.m.

_CLOSERS = "\"'”’»)]}"
_END = re.compile(r"([.!?…]+|[。！？]+)([" + re.escape(_CLOSERS) + r"」』]*)")
_CJK_END = "。！？"


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, stripped, none empty; joined with spaces they give back the words of `text`."""
    out: list[str] = []
    for para in re.split(r"\n[ \t]*\n+", text or ""):
        para = " ".join(para.split())
        if para:
            out.extend(_split_paragraph(para))
    return out


def _split_paragraph(p: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _END.finditer(p):
        end = m.end()
        nxt = p[end:end + 1]
        cjk = m.group(1)[0] in _CJK_END
        if not cjk and nxt and not nxt.isspace():
            continue  # 3.14, example.com, "Hi!"he said
        if not cjk and m.group(1) == "." and not _ends_sentence(p, m.start(), end):
            continue
        piece = p[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    rest = p[start:].strip()
    if rest:
        out.append(rest)
    return out


def _ends_sentence(p: str, dot: int, end: int) -> bool:
    """A single '.' at p[dot]: is it the end of a sentence?"""
    word_start = dot
    while word_start > 0 and not p[word_start - 1].isspace():
        word_start -= 1
    word = p[word_start:dot].lstrip(_CLOSERS + "(\"'“‘«[")
    following = p[end:].lstrip()
    first = following[:1]
    if not first:
        return True
    lower = word.lower()
    if lower in _TITLES:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: J. R. R. Tolkien
    if _DOTTED.search(word + "."):
        return first.isupper() and lower not in ("e.g", "i.e", "cf")
    if lower in _SOFT:
        return first.isupper()
    return not first.islower()  # "the 2. place" ends nowhere useful; "word. next" is a typo, keep it whole


def chunk_text(text: str, max_chars: int, *, pack: bool = False) -> list[str]:
    """Sentences of `text`, each at most `max_chars` long: a longer sentence is cut at a clause break
    (, ; : — –), else at a space, else (one enormous word) anywhere. With `pack`, consecutive sentences are
    joined while they fit in `max_chars` (fewer, longer pieces: fewer engine calls and joins)."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    out: list[str] = []
    for s in split_sentences(text):
        out.extend(wrap(s, max_chars))
    if not pack:
        return out
    packed: list[str] = []
    for piece in out:
        if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
            packed[-1] += " " + piece
        else:
            packed.append(piece)
    return packed


def wrap(s: str, max_chars: int) -> list[str]:
    """One sentence in pieces of at most `max_chars`: cut at the last clause break (, ; : — –) that fits,
    else at a space, else anywhere."""
    pieces: list[str] = []
    while len(s) > max_chars:
        window = s[:max_chars + 1]
        cut = -1
        for pattern in (r"[,;:—–)](?=\s)", r"\s"):
            found = [m.end() for m in re.finditer(pattern, window) if m.end() > max_chars // 3]
            if found:
                cut = found[-1]
                break
        if cut <= 0 or len(s[:cut].strip()) > max_chars:
            cut = max_chars
        head, s = s[:cut].strip(), s[cut:].strip()
        if head:
            pieces.append(head)
    if s:
        pieces.append(s)
    return pieces
