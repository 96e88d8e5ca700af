"""Small numpy signal helpers shared by the scorers: framing, STFT power, mel filterbanks, 16 kHz.

Numpy only (no librosa at run time: importing it pulls numba and its threads). The mel filterbank
and STFT follow librosa's definitions (Slaney mel scale and area normalisation by default, centred
frames with zero padding), so features match what the bundled models were trained on; the unit
tests compare them with librosa where it is installed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from audiosubnet.audio import to_16k as to_16k  # the scorers' `dsp.to_16k` (an explicit re-export)

SR = 16000  # every model scorer works at 16 kHz


def hz_to_mel(f: np.ndarray | float, htk: bool = False) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz(m: np.ndarray, htk: bool = False) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@lru_cache(maxsize=16)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                htk: bool = False, slaney_norm: bool = True) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) triangular filters, as librosa.filters.mel."""
    fmax = sr / 2.0 if fmax is None else fmax
    fftfreqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights: np.ndarray = np.maximum(0.0, np.minimum(lower, upper))
    if slaney_norm:
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=16)
def window(name: str, win_length: int, n_fft: int) -> np.ndarray:
    """A periodic window of `win_length`, zero-padded (centred) to `n_fft`, as librosa does."""
    n = np.arange(win_length)
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    elif name == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * n / win_length)
    else:
        raise ValueError(f"unknown window {name}")
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, dtype=np.float32)
    out[left:left + win_length] = w
    out.setflags(write=False)
    return out


def frames(x: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """(n_frames, frame_length) strided view; at least one (zero-padded) frame."""
    if len(x) < frame_length:
        x = np.pad(x, (0, frame_length - len(x)))
    view: np.ndarray = np.lib.stride_tricks.sliding_window_view(x, frame_length)[::hop]
    return view


def stft_power(x: np.ndarray, n_fft: int, hop: int, win_length: int | None = None, window_name: str = "hann",
               center: bool = True) -> np.ndarray:
    """|STFT|^2 as (..., n_frames, n_fft//2 + 1). `x` may be (n,) or (batch, n) of equal lengths."""
    win = window(window_name, win_length or n_fft, n_fft)
    x = np.asarray(x, dtype=np.float32)
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = np.pad(x, pad)
    if x.shape[-1] < n_fft:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_fft - x.shape[-1])])
    fr = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :]
    spec = _rfft(fr * win)
    power: np.ndarray = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    return power


def _rfft(x: np.ndarray) -> np.ndarray:
    """Real FFT over the last axis: scipy's pocketfft keeps float32 and is ~3x faster than numpy's."""
    try:
        import scipy.fft

        spec: np.ndarray = scipy.fft.rfft(x, axis=-1)  # scipy is untyped
        return spec
    except ImportError:  # scipy is optional
        return np.fft.rfft(x, axis=-1)


def power_to_db(s: np.ndarray, ref: float | np.ndarray = 1.0, amin: float = 1e-10, top_db: float | None = 80.0,
                axis: tuple[int, ...] | None = None) -> np.ndarray:
    """10 log10(S / ref), floored at max - top_db (per `axis` group when given), as librosa."""
    log_spec: np.ndarray = 10.0 * np.log10(np.maximum(amin, s))
    log_spec = log_spec - 10.0 * np.log10(np.maximum(amin, ref))
    if top_db is not None:
        peak = log_spec.max(axis=axis, keepdims=axis is not None)
        log_spec = np.maximum(log_spec, peak - top_db)
    return log_spec
