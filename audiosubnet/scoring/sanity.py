"""Cheap checks that run before any model: a failure scores 0 with a reason.

Each check is a few numpy passes over the samples (well under a millisecond per second of audio):
decodable, finite, sample rate 8-48 kHz, duration within limits and plausible for the text, not
silent, not clipped, no DC offset, and level modulation like speech (a steady tone or steady noise
has almost none). Time-reversed or otherwise unintelligible speech passes these and is caught by
the ASR gate of the composite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio, frame_rms_db
from audiosubnet.errors import AsnError


@dataclass(frozen=True)
class SanityLimits:
    min_sample_rate: int = 8000
    max_sample_rate: int = 48000
    min_seconds: float = 0.3
    max_seconds: float = 60.0
    max_chars_per_s: float = 35.0  # faster than this cannot have said the text
    min_chars_per_s: float = 5.0  # slower than this (after `slack_s`) is padding or something else
    slack_s: float = 2.0
    silence_dbfs: float = -50.0  # loudest 20 ms frame below this: silent
    min_active_s: float = 0.25  # sound within 40 dB of the loudest frame
    max_clipped: float = 0.005  # fraction of samples at the peak (>= 99% of it)
    max_dc: float = 0.03  # |mean| of the samples
    min_modulation_db: float = 2.5  # std of 20 ms levels over the sounding part


def decode(data: bytes | bytearray | memoryview, max_seconds: float) -> tuple[Audio | None, str | None]:
    """Bytes -> Audio, or (None, reason). Never raises."""
    try:
        return audiolib.decode(bytes(data), max_seconds=max_seconds), None
    except AsnError as e:
        return None, f"undecodable audio: {clean_message(e.message)}"
    except Exception as e:  # defensive: bytes from the network
        return None, f"undecodable audio: {type(e).__name__}"


def clean_message(msg: str) -> str:
    """libsndfile's messages name an in-memory file object; drop that noise."""
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", msg)


def spoken_chars(text: str) -> int:
    """Characters that take time to say (letters, digits; runs of spaces/punctuation count once)."""
    s = "".join(c if c.isalnum() else " " for c in text or "")
    return len(" ".join(s.split()))


def check(audio: Audio, text: str, limits: SanityLimits = SanityLimits()) -> tuple[str | None, dict[str, float]]:
    """(reason or None, informative metrics)."""
    x = audio.samples
    sr = audio.sample_rate
    info: dict[str, float] = {"duration_s": round(len(x) / sr, 3), "sample_rate": float(sr)}
    if len(x) == 0:
        return "empty audio", info
    if not np.all(np.isfinite(x)):
        return "audio contains NaN or infinite samples", info
    if not (limits.min_sample_rate <= sr <= limits.max_sample_rate):
        return (f"sample rate {sr} Hz is outside {limits.min_sample_rate}-{limits.max_sample_rate} Hz"), info
    dur = len(x) / sr
    if dur < limits.min_seconds:
        return f"audio is {dur:.2f} s long; at least {limits.min_seconds:g} s expected", info
    if dur > limits.max_seconds:
        return f"audio is {dur:.1f} s long; the limit is {limits.max_seconds:g} s", info
    peak = float(np.max(np.abs(x)))
    if peak > 1.01:
        return f"samples out of range (peak {peak:.1f}, expected within [-1, 1])", info
    levels = frame_rms_db(x, sr, 0.02)
    loudest = float(levels.max())
    info["peak_dbfs"] = round(float(20 * np.log10(max(peak, 1e-12))), 2)
    if loudest < limits.silence_dbfs:
        return f"silent (loudest frame {loudest:.0f} dBFS)", info
    sounding = levels[levels > loudest - 40.0]
    active_s = len(sounding) * 0.02
    info["active_s"] = round(active_s, 3)
    if active_s < limits.min_active_s:
        return f"almost silent ({active_s:.2f} s of sound)", info
    dc = float(np.mean(x, dtype=np.float64))
    info["dc"] = round(dc, 5)
    if abs(dc) > limits.max_dc:
        return f"DC offset {dc:+.3f}", info
    modulation = float(np.std(sounding))
    info["modulation_db"] = round(modulation, 2)
    if modulation < limits.min_modulation_db:
        return f"no speech-like level changes ({modulation:.1f} dB): a steady tone or noise", info
    clipped = float(np.mean(np.abs(x) >= 0.99 * peak)) if peak > 0.1 else 0.0
    info["clipped_fraction"] = round(clipped, 5)
    if clipped > limits.max_clipped:
        return f"clipped ({clipped * 100:.1f}% of samples at the peak)", info
    chars = spoken_chars(text)
    if chars:
        shortest = chars / limits.max_chars_per_s
        longest = chars / limits.min_chars_per_s + limits.slack_s
        if dur < shortest:
            return f"audio is {dur:.1f} s long; {chars} characters of text need at least {shortest:.1f} s", info
        if dur > longest:
            return f"audio is {dur:.1f} s long; {chars} characters of text take at most {longest:.1f} s", info
    return None, info
