"""Edits a copier may apply to someone else's answer before handing it in as its own: resampling,
gain, added white or pink noise, lossy round trips (MP3, Opus), speed changes (tempo and pitch
together), tempo-only changes (WSOLA time-stretch), pitch-only shifts (time-stretch + resample),
padding and trimming. Used to measure and test the copy detector (`fingerprint`) and to build cheating
miners in simulations. Numpy, soxr and soundfile only.

Every function takes and returns float32 samples (mono) at the given rate; `rng` makes noise
reproducible.
"""

from __future__ import annotations

import io

import numpy as np


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(x: np.ndarray, sr: int, new_sr: int) -> np.ndarray:
    """Resampled to `new_sr` (same duration, same pitch)."""
    import soxr

    if sr == new_sr or not len(x):
        return _f32(x)
    return _f32(soxr.resample(_f32(x), sr, new_sr, quality="HQ"))


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return _f32(np.clip(x * 10 ** (db / 20), -1.0, 1.0))


def add_noise(x: np.ndarray, snr_db: float, color: str = "white", rng: np.random.Generator | None = None
              ) -> np.ndarray:
    """`x` plus white or pink (1/f power) noise at `snr_db` below the clip's mean power."""
    rng = rng or np.random.default_rng(0)
    n = rng.standard_normal(len(x))
    if color == "pink":
        spec = np.fft.rfft(n)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        n = np.fft.irfft(spec / np.sqrt(f), len(x))
    elif color != "white":
        raise ValueError(f"noise colour must be white or pink, not {color!r}")
    p_sig = float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0
    p_noise = float(np.mean(n * n)) or 1.0
    n *= np.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))
    return _f32(x + n)


def speed(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Played `factor` times faster, as a tape or a wrong sample rate would: tempo and pitch together."""
    import soxr

    if factor == 1.0 or not len(x):
        return _f32(x)
    return _f32(soxr.resample(_f32(x), sr * factor, sr, quality="HQ"))


def time_stretch(x: np.ndarray, sr: int, factor: float, frame_s: float = 0.04) -> np.ndarray:
    """`factor` times longer (factor < 1: shorter), pitch kept: WSOLA (waveform-similarity overlap-add,
    Verhelst & Roelands 1993) with Hann frames of `frame_s`, half overlap, search of ±frame/4."""
    x = _f32(x)
    if factor == 1.0 or len(x) < 4:
        return x
    n = max(16, int(frame_s * sr)) // 2 * 2
    hs = n // 2  # output hop
    ha = hs / factor  # input hop
    tol = n // 4
    win = np.hanning(n + 1)[:n].astype(np.float32)  # periodic: overlaps at hop n/2 sum to 1
    pad = np.concatenate([np.zeros(n + tol, np.float32), x, np.zeros(2 * n + tol, np.float32)])
    n_out = int(np.ceil(len(x) * factor))
    frames = n_out // hs + 2
    y = np.zeros(frames * hs + n, np.float32)
    prev = None  # input position of the previous frame
    for m in range(frames):
        ideal = int(round(m * ha)) + tol  # position in `pad` (+n offsets below)
        lo = max(0, ideal - tol)
        if prev is None:
            pos = ideal
        else:
            target = pad[prev + hs: prev + hs + n]  # the natural continuation of the previous frame
            seg = pad[lo: ideal + tol + n]
            if len(seg) < n or len(target) < n:
                pos = ideal
            else:
                c = np.correlate(seg, target, mode="valid")
                pos = lo + int(np.argmax(c))
        frame = pad[pos: pos + n]
        if len(frame) < n:
            break
        y[m * hs: m * hs + n] += frame * win
        prev = pos
    # input time 0 is pad[tol]; x starts n samples later, which lands at n * factor in the output
    start = int(round(n * factor))
    return _f32(y[start:start + n_out])


def tempo(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Played `factor` times faster with the pitch kept (WSOLA)."""
    return time_stretch(x, sr, 1.0 / factor)


def pitch_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Pitch moved by `semitones`, duration kept: time-stretch by the ratio, then resample back."""
    r = 2.0 ** (semitones / 12.0)
    if r == 1.0:
        return _f32(x)
    return speed(time_stretch(x, sr, r), sr, r)


def pad_trim(x: np.ndarray, sr: int, start_s: float = 0.0, end_s: float = 0.0) -> np.ndarray:
    """Positive seconds add silence at that end, negative ones cut audio off it."""
    x = _f32(x)
    a, b = int(round(abs(start_s) * sr)), int(round(abs(end_s) * sr))
    if start_s < 0:
        x = x[a:]
    if end_s < 0:
        x = x[:max(0, len(x) - b)]
    return _f32(np.concatenate([np.zeros(a if start_s > 0 else 0, np.float32), x,
                                np.zeros(b if end_s > 0 else 0, np.float32)]))


def encode_lossy(x: np.ndarray, sr: int, fmt: str = "mp3", kbps: int = 64) -> bytes:
    """`x` coded as 'mp3' (MPEG-1 layer III, constant bit rate) or 'opus' (Ogg Opus, at 48 kHz) at
    about `kbps` kbit/s by libsndfile."""
    import soundfile as sf

    x = _f32(np.clip(x, -1.0, 1.0))
    if fmt == "mp3":
        container, subtype, rate = "MP3", "MPEG_LAYER_III", sr if sr in (32000, 44100, 48000) else 44100
    elif fmt == "opus":
        container, subtype, rate = "OGG", "OPUS", 48000
    else:
        raise ValueError(f"codec must be mp3 or opus, not {fmt!r}")
    x = resample(x, sr, rate)
    buf = io.BytesIO()
    kw: dict[str, float | str] = {"compression_level": _compression_level(fmt, kbps, rate)}
    if fmt == "mp3":
        kw["bitrate_mode"] = "CONSTANT"
    sf.write(buf, x, rate, format=container, subtype=subtype, **kw)
    return buf.getvalue()


def codec(x: np.ndarray, sr: int, fmt: str = "mp3", kbps: int = 64) -> tuple[np.ndarray, int]:
    """A lossy round trip (`encode_lossy`, then decoding). Returns (samples, rate)."""
    import soundfile as sf

    y, got = sf.read(io.BytesIO(encode_lossy(x, sr, fmt, kbps)), dtype="float32", always_2d=False)
    if y.ndim == 2:
        y = y.mean(axis=1)
    return _f32(y), int(got)


# libsndfile's compression level -> constant MPEG-1 layer III bit rate (measured with libsndfile 1.2)
_MP3_LEVELS = {48: 0.95, 56: 0.905, 64: 0.875, 80: 0.83, 96: 0.8}


def _compression_level(fmt: str, kbps: int, rate: int) -> float:
    """libsndfile's compression level in [0, 1] for about `kbps`: Opus maps it linearly onto
    6-256 kbit/s (mono); MP3 onto the standard constant bit rates (a table)."""
    if fmt == "opus":
        return float(np.clip((256.0 - kbps) / 250.0, 0.0, 1.0))
    if kbps not in _MP3_LEVELS:
        raise ValueError(f"MP3 bit rate must be one of {sorted(_MP3_LEVELS)} kbit/s, not {kbps}")
    return _MP3_LEVELS[kbps]
