"""Each cheap check rejects its case with a reason and lets ordinary speech through."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.scoring.sanity import SanityLimits, check, decode, spoken_chars

TEXT = "Please remember to bring your umbrella tomorrow morning."


def speechlike(seconds: float = 3.0, sr: int = 16000, level: float = 0.3) -> Audio:
    """Noise with a 4 Hz syllable-like envelope and pauses (passes every check)."""
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    x = np.random.default_rng(1).standard_normal(len(t)) * env * level / 3
    return Audio(x.astype(np.float32), sr)


def test_speech_passes(voices):
    for a in (voices["piper"][2], voices["espeak"][2], speechlike()):
        reason, info = check(a, TEXT)
        assert reason is None, reason
        assert info["duration_s"] > 0 and "modulation_db" in info


@pytest.mark.parametrize(("make", "expect"), [
    (lambda a: Audio(np.zeros(0, np.float32), a.sample_rate), "empty"),
    (lambda a: Audio(np.where(np.arange(len(a.samples)) == 5, np.nan, a.samples), a.sample_rate), "NaN"),
    (lambda a: Audio(a.samples, 4000), "sample rate"),
    (lambda a: Audio(a.samples, 96000), "sample rate"),
    (lambda a: Audio(a.samples[:1000], a.sample_rate), "long"),
    (lambda a: Audio(np.tile(a.samples, 40), a.sample_rate), "limit"),
    (lambda a: Audio(a.samples * 3, a.sample_rate), "out of range"),
    (lambda a: Audio(np.zeros_like(a.samples), a.sample_rate), "silent"),
    (lambda a: Audio(a.samples * 1e-4, a.sample_rate), "silent"),
    (lambda a: Audio(np.clip(a.samples * 10, -1, 1), a.sample_rate), "clipped"),
    (lambda a: Audio(np.clip(a.samples * 0.5 + 0.2, -1, 1), a.sample_rate), "DC offset"),
    (lambda a: Audio((0.5 * np.sin(np.arange(len(a.samples)) * 0.1)).astype(np.float32), a.sample_rate), "tone"),
    (lambda a: Audio(np.tile(a.samples, 6), a.sample_rate), "at most"),
])
def test_each_check(make, expect):
    a = speechlike(3.0, 22050)
    reason, _ = check(make(a), TEXT)
    assert reason is not None and expect in reason, reason


def test_too_fast_for_the_text():
    reason, _ = check(speechlike(0.5), TEXT * 3)
    assert reason and "need at least" in reason


def test_decode_never_raises():
    for data in (b"", b"RIFF", b"\x00" * 100, bytes(range(256)) * 10):
        a, reason = decode(data, 60)
        assert a is None and reason.startswith("undecodable audio")
        assert "BytesIO" not in reason
    a, reason = decode(audiolib.encode(speechlike(), "flac"), 60)
    assert reason is None and a.sample_rate == 16000
    a, reason = decode(audiolib.encode(speechlike(5.0), "wav"), 2.0)
    assert a is None and "limit" in reason


def test_spoken_chars():
    assert spoken_chars("Hello,   world!!") == len("Hello world")
    assert spoken_chars("") == 0
    assert check(speechlike(), "", SanityLimits())[0] is None  # no text: duration plausibility skipped
