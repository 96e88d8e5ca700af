"""Cheap checks on a text-to-music answer, before any model (numpy only, well under 1 ms per second of audio).

A failure scores 0 with a reason: empty, NaN/inf, sample rate outside 16-48 kHz, samples out of [-1, 1],
silent (loudest 20 ms frame below -50 dBFS) or mostly silent (under half of the clip within 40 dB of its
loudest frame), clipped (over 1% of samples at a peak of full scale), DC offset over 0.03, shorter than half
or longer than the requested length plus max(2 s, 10%).

Duration: every shortfall costs. A clip of d seconds for a request of r seconds keeps `min(1, d / r)` of its
score (9.5 s for 10 s keeps 0.95), so stopping early never pays; a clip longer than asked is cut to r before
it is scored. Duplicates are found with the fingerprints of `scoring/fingerprint.py` (see scoring/music.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiosubnet.audio import Audio, frame_rms_db


@dataclass(frozen=True)
class MusicLimits:
    min_sample_rate: int = 16000
    max_sample_rate: int = 48000
    min_fraction: float = 0.5  # shorter than this share of the requested length fails
    max_excess_s: float = 2.0  # longer than requested + max(this, 10%) fails
    silence_dbfs: float = -50.0
    min_active_fraction: float = 0.5  # share of 20 ms frames within 40 dB of the loudest
    max_clipped: float = 0.01  # share of samples at a full-scale peak
    max_dc: float = 0.03


def check_music(audio: Audio, requested_s: float, limits: MusicLimits = MusicLimits()
                ) -> tuple[str | None, float, dict[str, float]]:
    """(reason or None, duration factor in [0, 1], informative metrics)."""
    x, sr = audio.samples, audio.sample_rate
    dur = len(x) / sr if sr else 0.0
    info: dict[str, float] = {"duration_s": round(dur, 3), "requested_s": float(requested_s)}
    if len(x) == 0:
        return "empty audio", 0.0, info
    if not np.all(np.isfinite(x)):
        return "audio contains NaN or infinite samples", 0.0, info
    if not (limits.min_sample_rate <= sr <= limits.max_sample_rate):
        return f"sample rate {sr} Hz is outside {limits.min_sample_rate}-{limits.max_sample_rate} Hz", 0.0, info
    if dur < limits.min_fraction * requested_s:
        return f"audio is {dur:.1f} s long; {requested_s:g} s was asked for", 0.0, info
    longest = requested_s + max(limits.max_excess_s, 0.1 * requested_s)
    if dur > longest:
        return f"audio is {dur:.1f} s long; {requested_s:g} s was asked for (at most {longest:g} s)", 0.0, info
    peak = float(np.max(np.abs(x)))
    info["peak_dbfs"] = round(float(20 * np.log10(max(peak, 1e-12))), 2)
    if peak > 1.01:
        return f"samples out of range (peak {peak:.1f}, expected within [-1, 1])", 0.0, info
    levels = frame_rms_db(x, sr, 0.02)
    loudest = float(levels.max())
    if loudest < limits.silence_dbfs:
        return f"silent (loudest frame {loudest:.0f} dBFS)", 0.0, info
    active = float(np.mean(levels > loudest - 40.0))
    info["active_fraction"] = round(active, 3)
    if active < limits.min_active_fraction:
        return f"mostly silent ({active * 100:.0f}% of the clip has sound)", 0.0, info
    dc = float(np.mean(x, dtype=np.float64))
    info["dc"] = round(dc, 5)
    if abs(dc) > limits.max_dc:
        return f"DC offset {dc:+.3f}", 0.0, info
    clipped = float(np.mean(np.abs(x) >= 0.99)) if peak >= 0.99 else 0.0
    info["clipped_fraction"] = round(clipped, 5)
    if clipped > limits.max_clipped:
        return f"clipped ({clipped * 100:.1f}% of samples at full scale)", 0.0, info
    factor = min(1.0, dur / requested_s) if requested_s > 0 else 1.0
    info["duration_factor"] = round(factor, 4)
    return None, factor, info
