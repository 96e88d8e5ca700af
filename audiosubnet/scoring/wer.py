"""Word and character error rates after English normalisation.

WER is a word-level edit distance (substitutions + deletions + insertions over reference words)
with one extension: a group of up to `MAX_GROUP` reference words may match a group of up to
`MAX_GROUP` hypothesis words at no cost when their letters agree with the spaces removed, so
"sea shells" / "seashells", "code named" / "codenamed", "9 30" / "930" and "p m" / "pm" are not
errors. CER is the character edit distance of the normalised texts with spaces removed (so the
same compounds cost nothing) over the reference length, computed with Myers' bit-parallel
algorithm (fast in pure Python on prompt-sized texts). Both are >= 0 and may exceed 1.

`relatedness(reference, hypothesis)` asks a different question: is this speech of the prompt at all? It is the
share of the prompt's content words (not in `STOPWORDS`) that the transcript contains, each word matched at most
once, a word matching when its letters are within one edit per four letters of a transcript word (so an accent
or a weak ASR that mishears "harbour" as "harbor" still counts). Speech of the prompt scores 0.5-1.0 even when
the WER is high (a robotic voice the ASR mishears); speech of another sentence scores 0.0-0.15.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiosubnet.scoring.normalize import normalize

MAX_GROUP = 3


@dataclass(frozen=True)
class ErrorRates:
    wer: float
    cer: float
    ref_words: int
    hyp_words: int
    errors: int

    def as_dict(self) -> dict[str, float]:
        return {"wer": self.wer, "cer": self.cer}


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Edit distance between word lists where equal-when-joined groups match for free."""
    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        return n + m
    hyp_groups: dict[str, list[tuple[int, int]]] = {}  # joined text -> (end j, length l)
    for j in range(1, m + 1):
        for l in range(1, min(MAX_GROUP, j) + 1):  # noqa: E741
            hyp_groups.setdefault("".join(hyp[j - l:j]), []).append((j, l))
    groups: dict[int, list[tuple[int, int, int]]] = {}  # end i -> (k, end j, l), not 1:1
    for i in range(1, n + 1):
        for k in range(1, min(MAX_GROUP, i) + 1):
            for j, l in hyp_groups.get("".join(ref[i - k:i]), ()):  # noqa: E741
                if k > 1 or l > 1:
                    groups.setdefault(i, []).append((k, j, l))
    rows = [list(range(m + 1))]
    for i in range(1, n + 1):
        prev = rows[-1]
        cur = [i] + [0] * m
        r_word = ref[i - 1]
        for j in range(1, m + 1):
            best = prev[j - 1] + (r_word != hyp[j - 1])
            if prev[j] + 1 < best:
                best = prev[j] + 1
            if cur[j - 1] + 1 < best:
                best = cur[j - 1] + 1
            cur[j] = best
        for k, j, l in groups.get(i, ()):  # noqa: E741
            # a group ending at (i, j) can only lower cur[j]; propagate along the row afterwards
            cand = rows[-k][j - l] if k <= len(rows) else None
            if cand is not None and cand < cur[j]:
                cur[j] = cand
                for jj in range(j + 1, m + 1):
                    if cur[jj - 1] + 1 < cur[jj]:
                        cur[jj] = cur[jj - 1] + 1
                    else:
                        break
        rows.append(cur)
        if len(rows) > MAX_GROUP + 1:
            rows.pop(0)
    return rows[-1][m]


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (Myers/Hyyrö bit-parallel; Python ints as bit vectors)."""
    if not a:
        return len(b)
    if not b:
        return len(a)
    peq: dict[str, int] = {}
    for i, c in enumerate(a):
        peq[c] = peq.get(c, 0) | (1 << i)
    m = len(a)
    mask = (1 << m) - 1
    last = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for c in b:
        eq = peq.get(c, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & mask) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & mask
        mh = pv & xh
        if ph & last:
            score += 1
        elif mh & last:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv
    return score


_STOPWORDS_TEXT = (
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these "
    "those he she they we you i me my our your his her their them him us not no so than then there here do "
    "does did has have had will would can could should shall may might must about into over under up down out "
    "off all any "
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def relatedness(reference: str, hypothesis: str, *, normalized: bool = False) -> float:
    """Share of the reference's content words found in the hypothesis (fuzzy, each used once); 1.0 when the
    reference has no content words and the hypothesis is not empty."""
    ref = (reference if normalized else normalize(reference)).split()
    hyp = (hypothesis if normalized else normalize(hypothesis)).split()
    content = [w for w in ref if w not in STOPWORDS] or ref
    if not content:
        return 1.0 if hyp else 0.0
    pool = [w for w in hyp if w not in STOPWORDS] or hyp
    used = [False] * len(pool)
    found = 0
    for w in content:
        for k, h in enumerate(pool):
            if not used[k] and (h == w or (abs(len(h) - len(w)) <= len(w) // 4
                                          and levenshtein(w, h) <= len(w) // 4)):
                used[k] = True
                found += 1
                break
    return found / len(content)


def error_rates(reference: str, hypothesis: str, *, normalized: bool = False) -> ErrorRates:
    """WER and CER of `hypothesis` against `reference` (both normalised unless `normalized`)."""
    ref = reference if normalized else normalize(reference)
    hyp = hypothesis if normalized else normalize(hypothesis)
    rw, hw = ref.split(), hyp.split()
    if not rw:
        bad = 1.0 if hw else 0.0
        return ErrorRates(bad, bad, 0, len(hw), len(hw))
    errors = word_errors(rw, hw)
    rc, hc = "".join(rw), "".join(hw)
    cer = levenshtein(rc, hc) / len(rc)
    return ErrorRates(errors / len(rw), cer, len(rw), len(hw), errors)
