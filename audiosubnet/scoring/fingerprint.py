"""Perceptual audio fingerprints for copy detection: a copy survives resampling, gain, added noise,
lossy re-encoding, padding and trimming, and also speed, tempo and pitch changes (within +-7 % in time,
+-1.5 semitones in frequency); two renderings of one text (another seed, another voice) do not match.
Numpy/soxr only. Method, measurements and limits: docs/copy-detection.md.

Fingerprint (after Haitsma & Kalker, "A highly robust audio fingerprinting system", 2002): 8 kHz
audio, 64 ms frames every 8 ms, energies in 33 bands spaced on a log scale over 320-3500 Hz
(inside what MP3/Opus and 8 kHz resampling keep); 32 bits per frame, bit m = sign of the change
over time of the log-energy difference between bands m and m+1. Gain cancels in the differences.
Frames more than 35 dB below the loudest frame (or below -60 dBFS) are masked out (silence carries no
identity). A fresh fingerprint also carries the bits for band edges scaled by 2**(k/72), |k| <= 9
(sixth-of-a-semitone steps): a pitch-shifted or sped-up copy matches one of them. Only the unscaled bits
go into the history: one side of a comparison is always fresh.

Matching (`distance`): b's frame r * t + offset is compared with a's frame t. Candidate (r, offset)
come from cross-correlating the frame-level onsets (envelope differences) of both clips, first for
every time scale r within +-7 % on envelopes averaged over 8 frames (one batched FFT), then for the
best few at full resolution. The bit error rate (BER) is then measured for every frequency variant
at the best candidates (on every 4th frame), and refined around the best; each half-second segment
may move by up to +-2 frames on its own (WSOLA and codec jitter). Copies score BER ~0.0-0.25,
independent renderings of the same text ~0.29-0.45, unrelated speech ~0.45-0.5; DEFAULT_THRESHOLD
(0.27) is calibrated on measured non-copies. The alignment must cover half of the shorter clip's
active frames. About 35 ms to fingerprint 30 s of audio, 5-15 ms to compare two 30 s clips.

A fingerprint takes 6 bytes per 8 ms frame in the history (about 23 KB for 30 s of audio), 82 bytes
per frame in memory while fresh. `FingerprintHistory` keeps recent fingerprints by prompt text
(copies are copies of an answer to the same prompt; a copy for another text fails the ASR gate
anyway), bounded in size, with `to_bytes`/`from_bytes` and atomic `save`/`load` (npz, no pickle).
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
from typing import TYPE_CHECKING

import numpy as np

from audiosubnet.scoring import dsp

if TYPE_CHECKING:
    import numpy.typing as npt

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 2
FP_SR = 8000  # fingerprints are computed at 8 kHz (all bands lie below 4 kHz)
N_FFT = 512
HOP = 64
N_BANDS = 33
F_LO, F_HI = 320.0, 3500.0  # room above and below for band edges scaled by up to 1.5 semitones
ACTIVE_DB = 35.0
SILENCE_DBFS = -60.0  # frames quieter than this are never active
FRAMES_PER_S = FP_SR / HOP
MIN_OVERLAP_FRAMES = int(0.75 * FRAMES_PER_S)
MIN_OVERLAP = 0.5  # share of the shorter clip's active frames an alignment must cover
# frequency scales searched: band edges times 2**(k / SHIFTS_PER_OCTAVE), |k| <= MAX_SHIFT (pitch, speed)
SHIFTS_PER_OCTAVE = 72
MAX_SHIFT = 9
N_VARIANTS = 2 * MAX_SHIFT + 1
# time scales searched: b's frame r * t + L matches a's frame t, |ln r| <= MAX_LOG_RATE (tempo, speed)
MAX_LOG_RATE = float(np.log(1.07))
DECIM = 8  # envelope frames per coarse frame in the first search
SEG = 64  # frames per segment: each segment may move by up to +-JITTER frames on its own
JITTER = 2
N_CANDIDATES = 3
GIVE_UP = 0.44  # a candidate alignment this far off after the frequency search is not refined
WORST = 0.3  # the distance is the BER of the worst-matching segments holding this share of the frames
DEFAULT_THRESHOLD = 0.30  # calibrated: scripts/eval_copy_detector.py, docs/copy-detection.md


def _edge_positions() -> tuple[np.ndarray, np.ndarray]:
    """Band edges of every variant as (bin index, fraction): the cumulative power up to frequency f is
    C[i] + frac * P[i] with C the cumulative sum over whole bins (bin i spans (i -+ 0.5) * df), so each
    band sums the power of the bins it overlaps by the fraction it overlaps: smooth in the scale, and
    scaled edges closer than one bin still move the bands."""
    scales = 2.0 ** (np.arange(-MAX_SHIFT, MAX_SHIFT + 1) / SHIFTS_PER_OCTAVE)
    edges = np.geomspace(F_LO, F_HI, N_BANDS + 1)[None, :] * scales[:, None]  # (K, N_BANDS + 1)
    pos = edges.ravel() / (FP_SR / N_FFT) + 0.5
    idx = np.floor(pos).astype(np.int64)
    return idx, (pos - idx).astype(np.float32)


_EDGE_IDX, _EDGE_FRAC = _edge_positions()
_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    bits: np.ndarray  # uint32 (n,)
    active: np.ndarray  # bool (n,)
    envelope: np.ndarray  # int8 (n,): frame level in dB relative to the loudest, floored at -ACTIVE_DB
    # uint32 (N_VARIANTS, n): the bits with band edges scaled by 2**(k/72), k = -9..9 (row 9 is `bits`).
    # Kept in memory for fresh fingerprints only (a history stores `bits`): one side of a pair needs them.
    variants: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return len(self.bits)

    @property
    def active_frames(self) -> int:
        return int(self.active.sum())


def fingerprint(x16k: np.ndarray, *, scaled: bool = True) -> Fingerprint:
    """Fingerprint of 16 kHz float samples (with its frequency-scaled variants; `scaled=False`: only the bits a
    history or the wire keeps, ~1/13 of the band work)."""
    x = np.nan_to_num(np.asarray(x16k, dtype=np.float32))
    if len(x):
        import soxr

        x = np.asarray(soxr.resample(x, dsp.SR, FP_SR, quality="MQ"), dtype=np.float32)
    power = dsp.stft_power(x, N_FFT, HOP, center=False)  # (n, bins)
    n = len(power)
    cum = np.zeros((n, power.shape[1] + 1), np.float32)
    np.cumsum(power, axis=1, out=cum[:, 1:])
    k = N_VARIANTS if scaled else 1
    sel = slice(None) if scaled else slice(MAX_SHIFT * (N_BANDS + 1), (MAX_SHIFT + 1) * (N_BANDS + 1))
    e_idx, e_frac = _EDGE_IDX[sel], _EDGE_FRAC[sel]
    at_edges = (cum[:, e_idx] + e_frac * power[:, e_idx]).reshape(n, k, N_BANDS + 1)
    bands = np.maximum(np.diff(at_edges, axis=-1), 0.0)  # (n, K, N_BANDS)
    total = power.sum(axis=1)
    level = 10 * np.log10(total + 1e-12)
    peak = float(level.max()) if len(level) else 0.0
    cs = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(n) * HOP
    ends = np.minimum(starts + N_FFT, len(x))
    rms_db = 10 * np.log10((cs[ends] - cs[starts]) / N_FFT + 1e-12)
    active = (level > peak - ACTIVE_DB) & (rms_db > SILENCE_DBFS)
    floor = max(float(bands.max()) * 1e-7, 1e-12) if bands.size else 1e-12
    bands += floor
    variants = np.zeros((k, n), np.uint32)
    if n > 1:
        # bit m: the log-energy difference of bands m and m+1 grew since the last frame, i.e.
        # B[t, m] * B[t-1, m+1] > B[t, m+1] * B[t-1, m] (no logarithms needed)
        on = bands[1:, :, :-1] * bands[:-1, :, 1:] > bands[1:, :, 1:] * bands[:-1, :, :-1]  # (n-1, K, 32)
        packed = np.packbits(on, axis=-1, bitorder="little")  # (n-1, K, 4)
        variants[:, 1:] = np.ascontiguousarray(packed).view("<u4")[..., 0].T
    env = np.round(np.maximum(level - peak, -ACTIVE_DB)).astype(np.int8)  # 1 byte a frame in the history
    if n:
        active[0] = False
    if not scaled:
        return Fingerprint(variants[0].copy(), active, env)
    return Fingerprint(variants[MAX_SHIFT].copy(), active, env, variants)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        counts: np.ndarray = np.bitwise_count(x)
    else:
        counts = _POP8[x.view(np.uint8)].reshape(*x.shape, x.itemsize).sum(axis=-1)
    return counts


def _comparable(fp: Fingerprint) -> bool:
    return fp.active_frames >= MIN_OVERLAP_FRAMES


# ---- alignment -------------------------------------------------------------------------------
def _centred(env: np.ndarray, decim: int) -> np.ndarray:
    """The envelope's rises and falls (first difference of DECIM-frame means, or of a 3-frame
    smoothing at full resolution): onsets line up; the level of silence or padding does not count."""
    e = env.astype(np.float32)
    if decim > 1:
        m = len(e) // decim * decim
        e = e[:m].reshape(-1, decim).mean(axis=1) if m else e[:1]
    elif len(e) > 2:
        e = np.convolve(e, np.array([0.25, 0.5, 0.25], np.float32), mode="same")
    rises: np.ndarray = np.diff(e, prepend=e[:1]) if len(e) else e
    return rises


def _stretch(e: np.ndarray, rates: np.ndarray, width: int) -> np.ndarray:
    """(len(rates), width): row i is e read at rates[i] * t (t = 0, 1, ...), zero past e's end: a clip
    r times as long, seen on the other clip's time axis. One interpolation for every rate."""
    t = np.arange(width)[None, :] * np.asarray(rates, np.float64)[:, None]
    out: np.ndarray = np.interp(t.ravel(), np.arange(len(e)), e).reshape(t.shape).astype(np.float32)
    out[t > len(e) - 1] = 0.0
    return out


def _rates(frames: int) -> tuple[np.ndarray, float]:
    """Time scales searched on the coarse envelope, and their log step: small enough that the drift
    it leaves over half the clip stays within one coarse frame."""
    step = min(0.01, 2.0 * DECIM / max(frames, 1))
    k = int(np.ceil(MAX_LOG_RATE / step))
    return np.exp(np.linspace(-MAX_LOG_RATE, MAX_LOG_RATE, 2 * k + 1)), MAX_LOG_RATE / k


def _candidates(a: Fingerprint, b: Fingerprint) -> list[tuple[float, float]]:
    """The best few (r, offset) by envelope cross-correlation: b's frame r * t + offset matches a's
    frame t. First every time scale on envelopes averaged over DECIM frames (one batched FFT), then
    each candidate at full resolution, rates within a third of a step, offsets within DECIM frames."""
    ea = _centred(a.envelope, DECIM)
    eb = _centred(b.envelope, DECIM)
    rates, step = _rates(max(a.frames, b.frames))
    longest = max(len(ea), int(len(eb) / rates[0]) + 1)
    n = 1 << int(np.ceil(np.log2(2 * longest)))
    fa = np.fft.rfft(ea, n)
    stretched = _stretch(eb, rates, longest)
    norms = np.linalg.norm(stretched, axis=1) + 1e-6
    xc = np.fft.irfft(fa[None, :] * np.conj(np.fft.rfft(stretched, n, axis=1)), n, axis=1)
    xc /= norms[:, None]
    # xc[i, L] = sum_t ea[t + L] * stretched_i[t]: a's coarse frame u matches b's frame r * (u - L)
    flat_xc = xc.ravel()
    top = np.argpartition(flat_xc, -64)[-64:]
    coarse: list[tuple[int, int]] = []
    for flat in top[np.argsort(flat_xc[top])[::-1]]:
        i, idx = divmod(int(flat), n)
        lag = idx if idx < n // 2 else idx - n
        if all(abs(i - j) > 1 or abs(lag - m) > 2 for j, m in coarse):
            coarse.append((i, lag))
        if len(coarse) == N_CANDIDATES:
            break
    fa1 = _centred(a.envelope, 1)
    fb1 = _centred(b.envelope, 1)
    # full resolution: a's frame u matches s's frame u - L, dot products for each rate and L at once
    longest = int(len(fb1) / (rates[0] * np.exp(-step / 3))) + 1
    pad = longest + DECIM
    ap = np.concatenate([np.zeros(pad, np.float32), fa1, np.zeros(pad + longest, np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(ap, longest)
    out = []
    for i, lag in coarse:
        rs = rates[i] * np.exp(np.array([-1.0, 0.0, 1.0]) * step / 3)
        sm = _stretch(fb1, rs, longest)
        lags = np.clip(np.arange(lag * DECIM - DECIM, lag * DECIM + DECIM + 1), -pad, len(windows) - 1 - pad)
        c = (sm @ windows[lags + pad].T) / (np.linalg.norm(sm, axis=1)[:, None] + 1e-6)  # (rates, lags)
        m, k = np.unravel_index(int(np.argmax(c)), c.shape)
        out.append((float(rs[m]), -float(rs[m]) * float(lags[k])))
    return out


def _ber(a: Fingerprint, variants: np.ndarray, active_b: np.ndarray, rates: np.ndarray, offsets: np.ndarray,
         need: int, step: int = 1) -> np.ndarray:
    """Distances (K variants x C alignments) of b mapped onto a: b's frame round(r t + offset) for a's
    frame t; every segment of SEG frames takes its best shift within +-JITTER frames; the bit error rate
    over the worst segments holding WORST of the frames; 1.0 without enough overlap. `step` > 1 looks at
    every step-th frame only."""
    t = np.arange(0, a.frames, step)
    per = SEG // step
    nseg = (len(t) + per - 1) // per
    real = np.arange(nseg * per) < len(t)
    t = np.concatenate([t, np.zeros(nseg * per - len(t), np.int64)])  # whole segments (padding unused)
    shifts = np.arange(-JITTER, JITTER + 1)
    base = np.rint(np.outer(rates, t) + np.asarray(offsets)[:, None]).astype(np.int64)  # (C, T)
    idx = base[:, None, :] + shifts[None, :, None]  # (C, J, T)
    nb = variants.shape[1]
    ok = (idx >= 0) & (idx < nb)
    ok &= (a.active[t] & real)[None, None, :]
    idx = np.clip(idx, 0, max(nb - 1, 0))
    ok &= active_b[idx]
    k, c_, j_ = len(variants), len(rates), len(shifts)
    errs = _popcount(np.bitwise_xor(a.bits[t], variants[:, idx]))  # (K, C, J, T)
    errs = (errs * ok[None]).reshape(k, c_, j_, nseg, per).sum(axis=-1)  # (K, C, J, S)
    cnts = ok.reshape(c_, j_, nseg, per).sum(axis=-1)  # (C, J, S)
    valid = cnts >= np.maximum(0.75 * cnts.max(axis=1, keepdims=True), 1)
    rate = np.where(valid[None], errs / np.maximum(cnts, 1)[None], np.inf)
    pick = np.argmin(rate, axis=2)[:, :, None, :]  # (K, C, 1, S)
    e = np.take_along_axis(errs, pick, axis=2)[:, :, 0, :].astype(np.float64)  # (K, C, S)
    c = np.take_along_axis(np.broadcast_to(cnts, errs.shape), pick, axis=2)[:, :, 0, :].astype(np.float64)
    n = c.sum(axis=-1)
    # a copy matches everywhere; another rendering by one engine only in stretches: keep the worst
    order = np.argsort(-e / np.maximum(c, 1), axis=-1)
    cs = np.take_along_axis(c, order, axis=-1)
    keep = np.cumsum(cs, axis=-1) - cs < WORST * n[..., None]
    out: np.ndarray = ((np.take_along_axis(e, order, axis=-1) * keep).sum(axis=-1)
                       / (32.0 * np.maximum((cs * keep).sum(-1), 1)))
    out[(n * step < need) | (n == 0)] = 1.0
    return out


def distance(a: Fingerprint, b: Fingerprint) -> float:
    """Lowest distance over plausible edits (0 = identical, ~0.5 = unrelated, 1 = no overlap): time
    scales within +-7 % (tempo, speed), frequency scales within +-1.5 semitones (pitch, speed), offsets
    (padding, trimming); each half-second segment may also move by +-2 frames (16 ms)."""
    if not (_comparable(a) and _comparable(b)):
        return 1.0
    if b.variants is None and a.variants is not None:
        a, b = b, a
    variants = b.variants if b.variants is not None else b.bits[None, :]
    need = max(MIN_OVERLAP_FRAMES, int(MIN_OVERLAP * min(a.active_frames, b.active_frames)))
    cands = np.array(_candidates(a, b))  # (C, 2): rate, offset
    coarse = _ber(a, variants, b.active, cands[:, 0], cands[:, 1], need, step=4)  # (K, C)
    best = float(coarse.min())
    if best > GIVE_UP:  # nothing lines up: not worth refining
        return best
    c = int(np.argmin(coarse.min(axis=0)))
    r, offset = cands[c]
    ks = np.sort(np.argsort(coarse[:, c])[:2])  # the two best frequency scales
    _, step = _rates(max(a.frames, b.frames))
    rates = r * np.exp(np.array([-1.0, 0.0, 1.0]) * step / 8)
    offsets = offset + (r - rates) * a.frames / 2.0  # keep the middle of a in place
    return min(best, float(_ber(a, variants[ks], b.active, rates, offsets, need).min()))


def pairwise_duplicates(fps: list[Fingerprint], threshold: float = DEFAULT_THRESHOLD,
                        pairs: list[tuple[int, int]] | None = None) -> dict[tuple[int, int], float]:
    """{(i, j): distance} for the pairs (all i < j by default) that are duplicates."""
    ok = [_comparable(f) for f in fps]
    if pairs is None:
        pairs = [(i, j) for i in range(len(fps)) for j in range(i + 1, len(fps))]
    out: dict[tuple[int, int], float] = {}
    for i, j in pairs:
        if ok[i] and ok[j]:
            d = distance(fps[i], fps[j])
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
        """The earliest entry of another miner for this text that `fp` duplicates (oldest first, so the
        search stops at the first hit)."""
        if not _comparable(fp):
            return None
        for e in self._by_text.get(key, ()):
            if e.miner != miner and distance(fp, e.fp) <= threshold:
                return e
        return None

    def add(self, fp: Fingerprint, key: str, miner: str, label: str) -> None:
        """Remember `fp` (without its frequency variants: the fresh side of a comparison brings them)."""
        entries = self._by_text.setdefault(key, [])
        self._by_text.move_to_end(key)
        if fp.variants is not None:
            fp = Fingerprint(fp.bits, fp.active, fp.envelope)
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

        def cat(xs: list[np.ndarray], dt: npt.DTypeLike) -> np.ndarray:
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
    def load(cls, path: str | Path, **kwargs: int) -> FingerprintHistory:
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
_WIRE = (("bits", np.uint32), ("active", np.bool_), ("envelope", np.int8))  # what a history keeps, too


def to_wire(fp: Fingerprint) -> str:
    """Base64 of an npz of the fingerprint's frame arrays (no pickle; the scaled variants are rebuilt by whoever
    compares, as for a history entry)."""
    import base64

    buf = io.BytesIO()
    np.savez_compressed(buf, **{name: getattr(fp, name) for name, _ in _WIRE})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def from_wire(data: str) -> Fingerprint:
    """The fingerprint `to_wire` wrote; ValueError for anything else (sizes and dtypes checked)."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(data, validate=True)
        if len(raw) > MAX_WIRE_BYTES:
            raise ValueError("fingerprint too large")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {name: z[name] for name, _ in _WIRE}
    except (ValueError, KeyError, OSError, binascii.Error, EOFError) as e:
        raise ValueError(f"not a fingerprint ({type(e).__name__})") from e
    for name, dtype in _WIRE:
        if arrays[name].dtype != dtype or arrays[name].ndim != 1:
            raise ValueError(f"not a fingerprint (field {name})")
    if len({len(a) for a in arrays.values()}) > 1:
        raise ValueError("not a fingerprint (fields of different lengths)")
    return Fingerprint(**arrays)
