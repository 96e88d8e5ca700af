"""The copier's edits used to measure the copy detector do what they say: durations, pitch, noise
level and codec bit rates, checked on synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.scoring import copyedits as ce

SR = 22050


def tone(freq: float = 440.0, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_time_stretch_changes_duration_not_pitch(factor):
    x = tone()
    y = ce.time_stretch(x, SR, factor)
    assert abs(len(y) - factor * len(x)) <= 2
    assert abs(peak_hz(y[2000:-2000]) - 440.0) < 3.0
    # the envelope is stretched: a burst in the middle moves by the factor
    burst = np.zeros(2 * SR, np.float32)
    burst[SR:SR + 2000] = tone(1000.0, 2000 / SR)
    z = ce.time_stretch(burst, SR, factor)
    onset = int(np.argmax(np.abs(z) > 0.1))
    assert abs(onset - factor * SR) < 0.01 * SR


@pytest.mark.parametrize("semitones", [-1.0, 0.5, 1.0])
def test_pitch_shift_moves_the_tone_and_keeps_the_duration(semitones):
    x = tone()
    y = ce.pitch_shift(x, SR, semitones)
    assert abs(len(y) - len(x)) <= 0.002 * len(x) + 2
    want = 440.0 * 2 ** (semitones / 12)
    assert abs(peak_hz(y[2000:-2000]) - want) < 3.0


def test_speed_changes_duration_and_pitch_together():
    y = ce.speed(tone(), SR, 1.05)
    assert abs(len(y) - 2 * SR / 1.05) <= 2
    assert abs(peak_hz(y) - 440.0 * 1.05) < 3.0
    assert abs(len(ce.tempo(tone(), SR, 1.05)) - 2 * SR / 1.05) <= 2


@pytest.mark.parametrize("color", ["white", "pink"])
def test_noise_is_added_at_the_asked_snr(color):
    x = tone()
    y = ce.add_noise(x, 30.0, color, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 30.0) < 0.1
    with pytest.raises(ValueError):
        ce.add_noise(x, 30.0, "blue")


def test_pad_trim_and_gain():
    x = tone(seconds=1.0)
    assert len(ce.pad_trim(x, SR, 0.2, 0.1)) == len(x) + int(0.2 * SR) + int(round(0.1 * SR))
    y = ce.pad_trim(x, SR, -0.2, -0.1)
    assert len(y) == len(x) - int(round(0.2 * SR)) - int(round(0.1 * SR))
    assert np.array_equal(y, x[int(round(0.2 * SR)):len(x) - int(round(0.1 * SR))])
    assert np.allclose(ce.gain(x, -6.0), x * 10 ** (-6 / 20), atol=1e-6)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_codec_round_trip_at_64_kbits(fmt):
    x = (np.random.default_rng(0).standard_normal(3 * SR) * 0.1).astype(np.float32)
    kbps = len(ce.encode_lossy(x, SR, fmt, 64)) * 8 / 3.0 / 1000
    assert 52 <= kbps <= 76, f"{fmt} at {kbps:.0f} kbit/s"
    y, rate = ce.codec(x, SR, fmt, 64)
    assert rate in (44100, 48000) and abs(len(y) / rate - 3.0) < 0.1
    level = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(x.astype(np.float64) ** 2))
    assert abs(level) < 3.0  # the level survives (most of white noise's power lies below the codec's cut)
    with pytest.raises(ValueError):
        ce.codec(x, SR, "aac")
    with pytest.raises(ValueError):
        ce.codec(x, SR, "mp3", 70)
