"""Perceptual audio fingerprints: the same recording survives resampling, gain, lossy re-encoding and
trimming; two different sentences by one voice do not match. Numpy/soxr only, about 10 ms per 10 s clip.

Fingerprint (after Haitsma & Kalker, "A highly robust audio fingerprinting system", 2002): 8 kHz
audio, 64 ms frames every 8 ms, log energies in 33 bands spaced on a log scale over 300-3800 Hz
(inside what MP3/Vorbis and 8 kHz resampling keep); 32 bits per frame, bit m = sign of the change
over time of the energy difference between bands m and m+1. Gain cancels in the differences.
Frames more than 35 dB below the loudest frame (or below -60 dBFS) are masked out (silence carries no identity).

Matching: the frame-energy envelopes are cross-correlated (FFT) to find the best time offsets
(trimmed or padded copies), then the bit error rate (BER) over frames that are active in both is
measured around each candidate. Copies score BER ~0.05-0.2, different speech ~0.4-0.5; `threshold`
(default 0.3) separates them. The overlap must cover half of the shorter clip's active frames.

A fingerprint takes 6 bytes per 8 ms frame (about 23 KB for 30 s of audio).
`FingerprintHistory` keeps recent fingerprints by prompt text (copies are copies of an answer to the
same prompt; a copy for another text fails the ASR gate anyway), bounded in size, with
`to_bytes`/`from_bytes` and atomic `save`/`load` (npz, no pickle).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosubnet.scoring import dsp

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1
FP_SR = 8000  # fingerprints are computed at 8 kHz (all bands lie below 4 kHz)
N_FFT = 512
HOP = 64
N_BANDS = 33
F_LO, F_HI = 300.0, 3800.0
ACTIVE_DB = 35.0
SILENCE_DBFS = -60.0  # frames quieter than this are never active
FRAMES_PER_S = FP_SR / HOP
MIN_OVERLAP_FRAMES = int(0.75 * FRAMES_PER_S)
DEFAULT_THRESHOLD = 0.30


def _band_matrix() -> np.ndarray:
    edges = np.geomspace(F_LO, F_HI, N_BANDS + 1)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / FP_SR)
    m = np.zeros((N_BANDS, len(freqs)), np.float32)
    for b in range(N_BANDS):
        sel = (freqs >= edges[b]) & (freqs < edges[b + 1])
        if not sel.any():  # narrow low bands: nearest bin
            sel[np.argmin(np.abs(freqs - (edges[b] + edges[b + 1]) / 2))] = True
        m[b, sel] = 1.0
    return m


_BANDS = _band_matrix()
_WEIGHTS = (1 << np.arange(32, dtype=np.uint64)).astype(np.uint64)
_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@dataclass(frozen=True)
class Fingerprint:
    bits: np.ndarray  # uint32 (n,)
    active: np.ndarray  # bool (n,)
    envelope: np.ndarray  # int8 (n,): frame level in dB relative to the loudest, floored at -ACTIVE_DB

    @property
    def frames(self) -> int:
        return len(self.bits)

    @property
    def active_frames(self) -> int:
        return int(self.active.sum())


def fingerprint(x16k: np.ndarray) -> Fingerprint:
    """Fingerprint of 16 kHz float samples."""
    x = np.nan_to_num(np.asarray(x16k, dtype=np.float32))
    if len(x):
        import soxr

        x = np.asarray(soxr.resample(x, dsp.SR, FP_SR, quality="MQ"), dtype=np.float32)
    power = dsp.stft_power(x, N_FFT, HOP, center=False)  # (n, 513)
    bands = power @ _BANDS.T  # (n, 33)
    total = power.sum(axis=1)
    level = 10 * np.log10(total + 1e-12)
    peak = float(level.max()) if len(level) else 0.0
    cs = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(len(level)) * HOP
    ends = np.minimum(starts + N_FFT, len(x))
    rms_db = 10 * np.log10((cs[ends] - cs[starts]) / N_FFT + 1e-12)
    active = (level > peak - ACTIVE_DB) & (rms_db > SILENCE_DBFS)
    floor = max(float(bands.max()) * 1e-7, 1e-12) if bands.size else 1e-12
    logb = np.log(bands + floor)
    d = logb[:, :-1] - logb[:, 1:]  # (n, 32)
    bits = np.zeros(len(d), np.uint32)
    if len(d) > 1:
        on = (d[1:] - d[:-1]) > 0  # (n-1, 32)
        bits[1:] = (on.astype(np.uint64) @ _WEIGHTS).astype(np.uint32)
    env = np.round(np.maximum(level - peak, -ACTIVE_DB)).astype(np.int8)  # 1 byte a frame in the history
    active[0] = False
    return Fingerprint(bits, active, env)


def _popcount_sum(x: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(x).sum(dtype=np.int64))
    return int(_POP8[x.view(np.uint8)].sum(dtype=np.int64))


def _ber_at(a: Fingerprint, b: Fingerprint, lag: int) -> tuple[float, int]:
    """BER of b against a with b shifted by `lag` frames (b[i] aligns with a[i + lag])."""
    lo = max(0, lag)
    hi = min(a.frames, b.frames + lag)
    if hi - lo <= 0:
        return 1.0, 0
    sa = slice(lo, hi)
    sb = slice(lo - lag, hi - lag)
    both = a.active[sa] & b.active[sb]
    n = int(both.sum())
    if n == 0:
        return 1.0, 0
    diff = np.bitwise_xor(a.bits[sa][both], b.bits[sb][both])
    return _popcount_sum(diff) / (32.0 * n), n


def _fft_size(frames: int) -> int:
    return 1 << int(np.ceil(np.log2(max(2, 2 * frames))))


def _env_spectrum(fp: Fingerprint, n: int) -> np.ndarray:
    e = fp.envelope.astype(np.float32)
    e = e - e.mean() if fp.frames else np.zeros(1, np.float32)
    return np.fft.rfft(e, n)


def _top_lags(xc: np.ndarray, n: int, max_lag: int, k: int = 3) -> list[int]:
    """The k best distinct lags of a circular cross-correlation (lag L at index L, or n + L if L < 0)."""
    top = np.argpartition(xc, -4 * k)[-4 * k:] if len(xc) > 4 * k else np.arange(len(xc))
    top = top[np.argsort(xc[top])[::-1]]
    out: list[int] = []
    for idx in top:
        lag = int(idx) if idx < n // 2 else int(idx) - n
        if abs(lag) <= max_lag and all(abs(lag - o) > 2 for o in out):
            out.append(lag)
        if len(out) == k:
            break
    return out or [0]


def _verify(a: Fingerprint, b: Fingerprint, lags: list[int], stop_above: float = 0.42) -> float:
    """Lowest BER near the candidate lags; unrelated audio is given up on after the coarse pass."""
    need = max(MIN_OVERLAP_FRAMES, int(0.5 * min(a.active_frames, b.active_frames)))
    best, best_lag = 1.0, None
    for lag in lags:
        ber, n = _ber_at(a, b, lag)
        if n >= need and ber < best:
            best, best_lag = ber, lag
    if best_lag is None or best > stop_above:
        return best
    for fine in (best_lag - 2, best_lag - 1, best_lag + 1, best_lag + 2):
        ber, n = _ber_at(a, b, fine)
        if n >= need and ber < best:
            best = ber
    return best


def _comparable(fp: Fingerprint) -> bool:
    return fp.active_frames >= MIN_OVERLAP_FRAMES


def distance(a: Fingerprint, b: Fingerprint) -> float:
    """Lowest bit error rate over plausible alignments (0 = identical, ~0.5 = unrelated, 1 = no overlap)."""
    if not (_comparable(a) and _comparable(b)):
        return 1.0
    n = _fft_size(max(a.frames, b.frames))
    xc = np.fft.irfft(_env_spectrum(a, n) * np.conj(_env_spectrum(b, n)), n)
    return _verify(a, b, _top_lags(xc, n, max(a.frames, b.frames)))


def pairwise_duplicates(fps: list[Fingerprint], threshold: float = DEFAULT_THRESHOLD,
                        pairs: list[tuple[int, int]] | None = None) -> dict[tuple[int, int], float]:
    """{(i, j): distance} for the pairs (all i < j by default) that are duplicates.

    The envelope cross-correlations of all pairs run as one batched FFT; only the best lags of each
    pair are checked bit by bit. About 0.1 ms per pair of 30 s clips.
    """
    ok = [_comparable(f) for f in fps]
    if pairs is None:
        pairs = [(i, j) for i in range(len(fps)) for j in range(i + 1, len(fps))]
    pairs = [(i, j) for i, j in pairs if ok[i] and ok[j]]
    if not pairs:
        return {}
    longest = max(fps[k].frames for pair in pairs for k in pair)
    n = _fft_size(longest)
    spectra = {k: _env_spectrum(fps[k], n) for k in {k for pair in pairs for k in pair}}
    out: dict[tuple[int, int], float] = {}
    for start in range(0, len(pairs), 256):
        chunk = pairs[start:start + 256]
        prod = np.stack([spectra[i] * np.conj(spectra[j]) for i, j in chunk])
        xcs = np.fft.irfft(prod, n, axis=1)
        for (i, j), xc in zip(chunk, xcs, strict=True):
            d = _verify(fps[i], fps[j], _top_lags(xc, n, max(fps[i].frames, fps[j].frames)))
            if d <= threshold:
                out[(i, j)] = d
    return out


def is_duplicate(a: Fingerprint, b: Fingerprint, threshold: float = DEFAULT_THRESHOLD) -> bool:
    return distance(a, b) <= threshold


def text_key(text: str) -> str:
    from audiosubnet.scoring.normalize import normalize

    return hashlib.sha1(normalize(text).encode()).hexdigest()[:16]


@dataclass
class HistoryEntry:
    fp: Fingerprint
    miner: str
    label: str
    round: int


class FingerprintHistory:
    """Recent fingerprints by prompt text, for copies across rounds. Bounded; oldest dropped first."""

    def __init__(self, max_entries: int = 4096, max_per_text: int = 64):
        self.max_entries = max_entries
        self.max_per_text = max_per_text
        self._by_text: OrderedDict[str, list[HistoryEntry]] = OrderedDict()
        self._count = 0
        self.round = 0

    def __len__(self) -> int:
        return self._count

    def find(self, fp: Fingerprint, key: str, miner: str, threshold: float = DEFAULT_THRESHOLD
             ) -> HistoryEntry | None:
        """The earliest entry of another miner for this text that `fp` duplicates."""
        others = [e for e in self._by_text.get(key, ()) if e.miner != miner]
        if not others:
            return None
        hits = pairwise_duplicates([fp] + [e.fp for e in others], threshold,
                                   pairs=[(0, k + 1) for k in range(len(others))])
        return others[min(j for _, j in hits) - 1] if hits else None

    def add(self, fp: Fingerprint, key: str, miner: str, label: str) -> None:
        entries = self._by_text.setdefault(key, [])
        self._by_text.move_to_end(key)
        entries.append(HistoryEntry(fp, miner, label, self.round))
        self._count += 1
        if len(entries) > self.max_per_text:
            entries.pop(0)
            self._count -= 1
        while self._count > self.max_entries and self._by_text:
            oldest_key = next(iter(self._by_text))
            old = self._by_text[oldest_key]
            old.pop(0)
            self._count -= 1
            if not old:
                del self._by_text[oldest_key]

    def next_round(self) -> None:
        self.round += 1

    # ---- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        meta, bits, active, env = [], [], [], []
        for key, entries in self._by_text.items():
            for e in entries:
                meta.append([key, e.miner, e.label, e.round, e.fp.frames])
                bits.append(e.fp.bits)
                active.append(e.fp.active)
                env.append(e.fp.envelope)
        header = {"version": FINGERPRINT_VERSION, "round": self.round, "max_entries": self.max_entries,
                  "max_per_text": self.max_per_text, "entries": meta}
        buf = io.BytesIO()

        def cat(xs: list[np.ndarray], dt) -> np.ndarray:
            return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

        np.savez_compressed(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                            bits=cat(bits, np.uint32), active=cat(active, np.bool_), env=cat(env, np.int8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FingerprintHistory:
        """Rebuild a history; ValueError for bytes that are not a history of this version."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                bits, active, env = z["bits"], z["active"], z["env"]
        except Exception as e:
            raise ValueError(f"not a fingerprint history ({type(e).__name__})") from e
        if header.get("version") != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint history version {header.get('version')} != {FINGERPRINT_VERSION}")
        h = cls(int(header["max_entries"]), int(header["max_per_text"]))
        h.round = int(header["round"])
        pos = 0
        for key, miner, label, rnd, n in header["entries"]:
            fp = Fingerprint(bits[pos:pos + n].copy(), active[pos:pos + n].copy(), env[pos:pos + n].copy())
            pos += n
            h._by_text.setdefault(key, []).append(HistoryEntry(fp, miner, label, int(rnd)))
            h._count += 1
        return h

    def save(self, path: str | Path) -> None:
        from audiosubnet.audio import write_atomic

        write_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> FingerprintHistory:
        """Read a saved history; a missing file gives an empty one, a corrupt one is kept aside (`.bad`)."""
        p = Path(path)
        if not p.is_file():
            return cls(**kwargs)
        try:
            return cls.from_bytes(p.read_bytes())
        except (OSError, ValueError) as e:
            log.warning("fingerprint history %s unreadable (%s); starting a new one", p, e)
            with contextlib.suppress(OSError):
                p.replace(p.with_suffix(p.suffix + ".bad"))
            return cls(**kwargs)


# ---- one fingerprint on the wire (a miner's relay evidence) --------------------------------------
MAX_WIRE_BYTES = 256 * 1024


def to_wire(fp: Fingerprint) -> str:
    """Base64 of an npz of the fingerprint's arrays (no pickle)."""
    import base64
    import dataclasses

    buf = io.BytesIO()
    np.savez_compressed(buf, **{f.name: getattr(fp, f.name) for f in dataclasses.fields(fp)})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def from_wire(data: str) -> Fingerprint:
    """The fingerprint `to_wire` wrote; ValueError for anything else (sizes and dtypes checked)."""
    import base64
    import binascii
    import dataclasses

    try:
        raw = base64.b64decode(data, validate=True)
        if len(raw) > MAX_WIRE_BYTES:
            raise ValueError("fingerprint too large")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {f.name: z[f.name] for f in dataclasses.fields(Fingerprint)}
    except (ValueError, KeyError, OSError, binascii.Error, EOFError) as e:
        raise ValueError(f"not a fingerprint ({type(e).__name__})") from e
    ref = fingerprint(np.zeros(dsp.SR // 4, np.float32))  # the dtypes and ranks of a real one
    for name, arr in arrays.items():
        want = getattr(ref, name)
        if arr.dtype != want.dtype or arr.ndim != want.ndim or arr.shape[1:] != want.shape[1:]:
            raise ValueError(f"not a fingerprint (field {name})")
    if len({len(a) for a in arrays.values()}) > 1:
        raise ValueError("not a fingerprint (fields of different lengths)")
    return Fingerprint(**arrays)
