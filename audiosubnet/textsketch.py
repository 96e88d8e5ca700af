"""Text sketches: which prompts reached a miner, comparable across small edits, without keeping the texts.

A sketch is the sorted set of 32-bit hashes of the character 5-grams of the normalised text (the scoring's
English normaliser first, so "seven" and "7", "Mister" and "Mr." are one text; then lower case, accents
dropped, every run of non-alphanumerics one space), keeping only the even hashes (a fixed half sample, so a
sketch is about two bytes per character of text). Both sides compute it the same way: a miner
logs the sketch of every prompt it accepts, a validator compares the prompts it issued with those logs.

`containment(part, whole)` is the share of `part`'s hashes found in `whole`: 1.0 when the prompt was
forwarded verbatim, ~0.85-0.95 after a changed word or two, ~0.0-0.15 between unrelated sentences.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

import numpy as np

SHINGLE = 5
MAX_HASHES = 4096  # a sketch on the wire never holds more (texts are capped far below this)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> str:
    from audiosubnet.scoring.normalize import normalize as english

    t = unicodedata.normalize("NFKD", english(str(text))).encode("ascii", "ignore").decode("ascii").lower()
    return " " + _NON_ALNUM.sub(" ", t).strip() + " "


def sketch(text: str) -> np.ndarray:
    """Sorted unique uint32 hashes of the sampled 5-grams of `text` (empty for texts shorter than one 5-gram)."""
    t = normalise(text)
    grams = {t[i:i + SHINGLE] for i in range(max(0, len(t) - SHINGLE + 1))}
    hashes = (int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") for g in grams)
    return np.array(sorted(h for h in hashes if h % 2 == 0), dtype=np.uint32)


def encode(s: np.ndarray) -> str:
    return base64.b64encode(np.asarray(s, dtype="<u4").tobytes()).decode("ascii")


def decode(data: str) -> np.ndarray:
    """A sketch from its wire form; ValueError for anything that is not one."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError("sketch is not base64") from e
    if len(raw) % 4 or len(raw) // 4 > MAX_HASHES:
        raise ValueError("sketch has a bad length")
    return np.unique(np.frombuffer(raw, dtype="<u4").astype(np.uint32))


def containment(part: np.ndarray, whole: np.ndarray) -> float:
    """Share of `part`'s hashes that are in `whole` (0 when `part` is empty)."""
    if len(part) == 0:
        return 0.0
    return float(np.isin(part, whole, assume_unique=True).sum()) / len(part)
