"""The composite score: a pure function of the metrics, the task and the scoring settings.

    composite = I * (wI * I + wN * N [+ wS * S for clone]) / (wI + wN [+ wS])    in [0, 1]

    I (intelligibility) = clamp(1 - WER / wer_zero, 0, 1): falls smoothly with the word error rate,
                          and also scales the rest (speech nobody can follow earns nothing for sounding
                          natural or like the reference voice)
    N (naturalness)     = clamp((MOS - mos_floor) / (mos_ceiling - mos_floor), 0, 1), where MOS is
                          the weighted mean of the MOS predictors that ran: UTMOS (weight_utmos) and
                          DNSMOS (weight_dnsmos; DNSMOS MOS = mean of OVRL and P.808)
    S (similarity)      = clamp((cos - sim_floor) / (sim_ceiling - sim_floor), 0, 1); floor and
                          ceiling default per speaker encoder (their cosine scales differ)

Defaults: wI = 0.5, wN = 0.5, wS = 1.0, wer_zero 1.0, MOS 1.5 -> 0 and 4.5 -> 1. Gates (each forces 0,
with a reason): a sanity, duplicate or relay failure (decided before this function); speech that is not
the prompt: `relatedness` (the share of the prompt's content words the transcript contains, scoring/wer.py)
below `min_relatedness` — a separate, explicit test, so a robotic voice the ASR half mishears keeps a graded
score while another sentence, read however well, scores 0; MOS < mos_gate (off by default); clone
similarity below sim_floor.

`SCORING_VERSION` names this formula and the metric definitions; bump it whenever either changes.
`profile(settings, models)` hashes everything else that changes scores (weights, gates, models).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# 4: a transcript that stops early is read again with timestamps; 3: graded intelligibility, relatedness gate,
# shared duplicates; 2: ASR cuts in pauses
SCORING_VERSION = "asn-score-4"

# (floor, ceiling) of cosine similarity per speaker encoder: ~different voices -> 0, ~same voice -> 1
SIMILARITY_SCALES: dict[str, tuple[float, float]] = {
    "dvector": (0.50, 0.85),  # offline voices: same voice 0.87-0.95, different voices 0.11-0.41
    "ge2e": (0.65, 0.90),  # same voice 0.93-0.95, different voices 0.52-0.73
    "xvector": (0.70, 0.95),  # WavLM-base-plus-sv: its model card's same-speaker threshold is 0.86
}


def similarity_scale(encoder: str, floor: float | None = None, ceiling: float | None = None
                     ) -> tuple[float, float]:
    kind = "xvector" if encoder.startswith("hf:") else encoder
    f, c = SIMILARITY_SCALES.get(kind, SIMILARITY_SCALES["xvector"])
    f = f if floor is None else floor
    c = c if ceiling is None else ceiling
    return f, max(c, f + 1e-6)


def _clamp01(x: float) -> float:
    return 0.0 if x != x else min(1.0, max(0.0, x))  # NaN -> 0


def mos(metrics: dict[str, float], w_utmos: float = 0.75, w_dnsmos: float = 0.25) -> float | None:
    """The naturalness MOS from whichever predictors ran (None when none did)."""
    parts: list[tuple[float, float]] = []
    if "utmos" in metrics:
        parts.append((w_utmos, metrics["utmos"]))
    if "dnsmos_ovrl" in metrics and "dnsmos_p808" in metrics:
        parts.append((w_dnsmos, 0.5 * (metrics["dnsmos_ovrl"] + metrics["dnsmos_p808"])))
    total = sum(w for w, _ in parts)
    if not parts:
        return None
    if total <= 0:
        return sum(v for _, v in parts) / len(parts)
    return sum(w * v for w, v in parts) / total


def composite(metrics: dict[str, float], task: str, s: Any, speaker_encoder: str = "dvector"
              ) -> tuple[float, str | None, dict[str, float]]:
    """(score in [0, 1], reason when gated to 0, the parts I/N/S). `s` is a ScoreSettings."""
    parts: dict[str, float] = {}
    terms: list[tuple[float, float]] = []
    reason: str | None = None
    wer = metrics.get("wer")
    scale = 1.0
    if wer is not None:
        parts["intelligibility"] = scale = _clamp01(1.0 - wer / s.wer_zero)
        terms.append((s.weight_intelligibility, parts["intelligibility"]))
    rel = metrics.get("relatedness")
    if rel is not None and rel < s.min_relatedness:
        reason = f"not speech of the prompt (relatedness {rel:.2f} < {s.min_relatedness:g})"
    m = mos(metrics, s.weight_utmos, s.weight_dnsmos)
    if m is not None:
        parts["mos"] = m
        parts["naturalness"] = _clamp01((m - s.mos_floor) / max(1e-6, s.mos_ceiling - s.mos_floor))
        terms.append((s.weight_naturalness, parts["naturalness"]))
        if reason is None and s.mos_gate > 0 and m < s.mos_gate:
            reason = f"quality too low (MOS {m:.2f} < {s.mos_gate:g})"
    if task == "clone":
        sim = metrics.get("speaker_sim")
        if sim is None:
            return 0.0, reason or "clone task without a speaker similarity", parts
        floor, ceiling = similarity_scale(speaker_encoder, s.sim_floor, s.sim_ceiling)
        parts["similarity"] = _clamp01((sim - floor) / (ceiling - floor))
        terms.append((s.weight_similarity, parts["similarity"]))
        if reason is None and sim < floor:
            reason = f"voice does not match the reference (similarity {sim:.2f} < {floor:.2f})"
    if reason is not None:
        return 0.0, reason, parts
    total = sum(w for w, _ in terms)
    if not terms or total <= 0:
        return 0.0, "no metric to score with", parts
    return _clamp01(scale * sum(w * v for w, v in terms) / total), None, parts


_PROFILE_FIELDS = ("weight_intelligibility", "weight_naturalness", "weight_similarity", "weight_utmos",
                   "weight_dnsmos", "wer_zero", "min_relatedness",
                   "mos_floor", "mos_ceiling", "mos_gate", "sim_floor", "sim_ceiling",
                   "duplicate_threshold", "duplicate_policy", "max_seconds", "min_seconds", "max_chars_per_s",
                   "min_chars_per_s", "asr_beam_size", "dnsmos_max_windows")


def profile(s: Any, models: dict[str, str]) -> str:
    """Short hash of the settings and models that change scores."""
    data = {f: getattr(s, f, None) for f in _PROFILE_FIELDS}
    data["models"] = dict(sorted(models.items()))
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
