from __future__ import annotations

import os

import numpy as np
import pytest

from audiosubnet import audio
from audiosubnet.errors import AudioDecodeError


def tone(sr=22050, seconds=1.0, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return audio.Audio((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_encode_decode_roundtrip(fmt):
    a = tone()
    b = audio.decode(audio.encode(a, fmt))
    assert b.sample_rate == 22050
    assert abs(b.duration - a.duration) < 0.08
    n = min(len(a.samples), len(b.samples))
    if fmt in ("wav", "flac"):
        assert np.allclose(a.samples[:n], b.samples[:n], atol=1e-3)
    else:  # lossy: same level, not identical
        assert abs(audio.rms_db(a.samples) - audio.rms_db(b.samples)) < 1.5


def test_encode_clips_and_removes_nan():
    a = audio.Audio(np.array([np.nan, 2.0, -3.0, 0.5, np.inf], np.float32), 16000)
    b = audio.decode(audio.encode(a, "wav"))
    assert np.all(np.isfinite(b.samples)) and np.max(np.abs(b.samples)) <= 1.0


@pytest.mark.parametrize("data", [b"", b"RIFF1234WAVEfmt ", os.urandom(2000), b"\x00" * 100])
def test_decode_garbage_is_a_typed_error(data):
    with pytest.raises(AudioDecodeError):
        audio.decode(data)


def test_decode_enforces_max_seconds():
    with pytest.raises(AudioDecodeError, match="limit"):
        audio.decode(audio.encode(tone(seconds=2.0), "wav"), max_seconds=1.0)


def test_stereo_is_mixed_to_mono_and_resample():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.stack([tone().samples, tone().samples], axis=1), 22050, format="WAV")
    a = audio.decode(buf.getvalue())
    assert a.samples.ndim == 1
    r = a.resampled(16000)
    assert r.sample_rate == 16000 and abs(len(r.samples) - 16000) <= 2


def test_write_atomic_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.wav"
    audio.write_atomic(p, b"first")
    assert p.read_bytes() == b"first"

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        audio.write_atomic(p, object())  # type: ignore[arg-type]
    assert p.read_bytes() == b"first"
    assert [f.name for f in tmp_path.iterdir()] == ["x.wav"]


def test_fast_wav_is_byte_identical_to_libsndfile():
    import io

    import soundfile as sf

    x = np.clip(np.random.default_rng(0).standard_normal(22050) * 0.3, -1, 1).astype(np.float32)
    x[:3] = [1.0, -1.0, 0.99999]
    buf = io.BytesIO()
    sf.write(buf, x, 22050, format="WAV", subtype="PCM_16")
    assert audio.encode(audio.Audio(x, 22050), "wav") == buf.getvalue()
