"""The offline voice-cloning fallback: the offline voice, converted toward the reference with WORLD.

LOW QUALITY, by design: this is what works on a fresh machine with no downloaded model and no GPU.
It is a signal-processing voice conversion, not a neural cloner; the result keeps the base voice's
prosody and phonetics and moves its pitch and timbre toward the reference speaker:

1. the text is spoken by the base voice (`world:<base model id>`; `world` alone uses the offline
   default, the Piper joe voice, else espeak), leased from the shared ModelCache and batched;
2. base and reference are analysed with the WORLD vocoder (pyworld: DIO + StoneMask F0,
   CheapTrick spectral envelope, D4C aperiodicity), at the base voice's sample rate;
3. F0: log-F0 mean and range of the base mapped onto the reference's (ratio clamped);
4. spectral envelope: a vocal-tract-length warp factor (the frequency scaling of the base's
   average envelope that best matches the reference's, searched on a grid) applied to every frame,
   then an average-envelope correction (the smoothed difference between the reference's and the
   warped base's long-term envelope, clipped to +-12 dB) as a fixed equaliser;
5. speaking rate: when the reference text is given, frames are resampled toward the reference's
   characters per second (clamped to 0.8-1.25);
6. aperiodicity is kept; WORLD resynthesises; peak normalised to -1 dBFS.

Deterministic: the conversion is a pure function of (base audio, reference); the same base clip and
reference give the same samples. The request's seed goes to the base voice: with a seedable base
(Piper) the same seed gives the same clone; espeak-ng adds pitch jitter of its own.
When the reference already sounds like the base voice (same pitch, vocal tract and average envelope,
within the margins the voice's own clips vary by) the base clip is returned as it is: resynthesis
would only add vocoder artefacts.

Model ids: `world` (= `world:auto`), `world:piper:en_US-joe-medium`, `world:espeak:en-us`.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine, SynthesisRequest
from audiosubnet.errors import DependencyError, EngineError, InputError

if TYPE_CHECKING:
    from audiosubnet.engines.registry import EngineCache

log = logging.getLogger(__name__)

FRAME_MS = 5.0
F0_FLOOR, F0_CEIL = 50.0, 600.0
ENVELOPE_F0_FLOOR = 71.0  # CheapTrick's default: an FFT of 1024 at 22.05 kHz (half the cost of 50 Hz, same sound)
WARP_GRID = np.round(np.arange(0.78, 1.321, 0.01), 3)
BAND_HZ = (150.0, 5500.0)  # where formants decide the warp
EQ_LIMIT_DB = 12.0
RATE_CLAMP = (0.8, 1.25)
F0_RATIO_CLAMP = (0.4, 2.5)
# "already this voice" margins: log-F0 median, vocal-tract warp, envelope correction (RMS dB).
# Measured on the Piper joe voice against itself (VITS noise makes every clip different; ~1,500 pairs
# of clips, three texts): |dF0| <= 0.16, |warp-1| <= 0.05 (it depends on the text), correction
# <= 4.4 dB; every espeak-ng voice is >= 6.7 dB or 0.19 in log-F0 away. The F0 range is left out: it
# is prosody, and it varies 0.47-1.34x between clips of the one voice. Resynthesis alone costs the joe
# voice ~0.13 of speaker similarity (0.87 -> 0.74), so a margin its own clips can miss turns "no
# change" into a worse clone.
SAME_F0_LOG, SAME_WARP, SAME_EQ_DB = 0.2, 0.065, 5.5
MAX_REFERENCE_S = 20.0  # analyse at most this much of the reference
MIN_VOICED_FRAMES = 20
PEAK = 0.89

_pyworld: ModuleType | None = None
_pw_lock = threading.Lock()


def load_pyworld() -> ModuleType:
    """pyworld's compiled module.

    pyworld 0.3.x's `__init__` imports `pkg_resources` only to read its own version, and
    setuptools >= 81 no longer ships `pkg_resources`; the compiled extension beside it has the whole
    API, so we load that directly when the package import fails for that reason.
    """
    global _pyworld
    with _pw_lock:
        if _pyworld is not None:
            return _pyworld
        try:
            import pyworld

            _pyworld = pyworld
            return cast(ModuleType, pyworld)
        except ImportError as e:
            if getattr(e, "name", None) != "pkg_resources":
                raise DependencyError("pyworld", "clone", "the WORLD voice-conversion fallback") from e
        spec = importlib.util.find_spec("pyworld")
        folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
        ext = [p for p in folder.iterdir() if p.name.startswith("pyworld.") and p.suffix in (".so", ".pyd")] \
            if folder and folder.is_dir() else []
        if not ext:
            raise DependencyError("pyworld", "clone", "the WORLD voice-conversion fallback")
        loader = importlib.machinery.ExtensionFileLoader("pyworld", str(ext[0]))
        mspec = importlib.util.spec_from_file_location("pyworld", ext[0], loader=loader)
        module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
        loader.exec_module(module)
        _pyworld = module
        return module


@dataclass(frozen=True)
class VoiceStats:
    """What the conversion needs to know about one speaker (from one clip)."""

    logf0_mean: float
    logf0_std: float
    env_shape: np.ndarray  # mean log spectral envelope of voiced frames, per-frame level removed
    chars_per_s: float | None  # speaking rate, when the clip's text is known
    voiced_frames: int


@dataclass
class WorldFrames:
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    fs: int


def analyse(x: np.ndarray, fs: int, aperiodicity: bool = True) -> WorldFrames:
    """WORLD analysis; the aperiodicity (D4C, a third of the cost) only where it is resynthesised."""
    pw = load_pyworld()
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(x64, fs, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x64, f0, t, fs)
    sp = pw.cheaptrick(x64, f0, t, fs, f0_floor=ENVELOPE_F0_FLOOR)
    fft = (sp.shape[1] - 1) * 2
    ap = pw.d4c(x64, f0, t, fs, fft_size=fft) if aperiodicity else np.zeros((0, sp.shape[1]))
    return WorldFrames(f0, sp, ap, fs)


def _voiced_mask(w: WorldFrames) -> np.ndarray:
    energy = np.log(np.maximum(w.sp.sum(axis=1), 1e-20))
    loud = energy > (np.max(energy) - 12.0) if len(energy) else energy.astype(bool)  # within ~50 dB of the peak
    return cast(np.ndarray, (w.f0 > 0) & loud)


def _shape(log_sp: np.ndarray) -> np.ndarray:
    """Per-frame level removed: the envelope's shape, not its loudness."""
    return cast(np.ndarray, log_sp - log_sp.mean(axis=-1, keepdims=True))


def voice_stats(w: WorldFrames, text: str | None = None, duration_s: float | None = None) -> VoiceStats:
    voiced = _voiced_mask(w)
    if int(voiced.sum()) < MIN_VOICED_FRAMES:
        raise InputError("the reference has too little voiced speech to take a voice from")
    lf0 = np.log(w.f0[voiced])
    lo, hi = np.percentile(lf0, [5, 95])
    core = lf0[(lf0 >= lo) & (lf0 <= hi)]
    env = _shape(np.log(np.maximum(w.sp[voiced], 1e-20))).mean(axis=0)
    rate = None
    if text and text.strip():
        active = _active_seconds(w)
        if active > 0.3:
            rate = len(" ".join(text.split())) / active
    return VoiceStats(float(np.median(lf0)), float(max(np.std(core), 1e-3)), env, rate, int(voiced.sum()))


def _active_seconds(w: WorldFrames) -> float:
    energy = 10 * np.log10(np.maximum(w.sp.sum(axis=1), 1e-20))
    active = energy > (np.max(energy) - 40.0)
    idx = np.flatnonzero(active)
    if not len(idx):
        return 0.0
    return cast(float, (idx[-1] - idx[0] + 1) * FRAME_MS / 1000.0)


def _freqs(fs: int, bins: int) -> np.ndarray:
    return np.linspace(0.0, fs / 2.0, bins)


def warp_envelopes(log_sp: np.ndarray, alpha: float, fs: int) -> np.ndarray:
    """Scale the frequency axis by alpha (alpha > 1 moves formants up, as for a shorter vocal tract).

    Piecewise linear: scaled up to 85% of Nyquist (or the image of it), then straight to Nyquist,
    so nothing is cut off or stretched past the band edge.
    """
    bins = log_sp.shape[-1]
    f = _freqs(fs, bins)
    nyq = fs / 2.0
    knee = 0.85 * nyq * min(1.0, 1.0 / alpha)  # source frequency where the straight segment starts
    # output frequency g maps back to source frequency f = g / alpha below knee*alpha
    g_knee = knee * alpha
    src = np.where(f <= g_knee, f / alpha, knee + (f - g_knee) * (nyq - knee) / max(nyq - g_knee, 1e-9))
    idx = src / nyq * (bins - 1)
    lo = np.clip(np.floor(idx).astype(int), 0, bins - 1)
    hi = np.clip(lo + 1, 0, bins - 1)
    frac = idx - lo
    return cast(np.ndarray, log_sp[..., lo] * (1 - frac) + log_sp[..., hi] * frac)


def best_warp(src_shape: np.ndarray, ref_shape: np.ndarray, fs: int) -> float:
    """The grid warp factor whose warped source envelope best matches the reference (band-limited)."""
    f = _freqs(fs, len(src_shape))
    band = (f >= BAND_HZ[0]) & (f <= min(BAND_HZ[1], 0.45 * fs))
    r = ref_shape[band] - ref_shape[band].mean()
    best, best_cost = 1.0, np.inf
    for a in WARP_GRID:
        w = warp_envelopes(src_shape, float(a), fs)[band]
        w = w - w.mean()
        cost = float(np.mean((w - r) ** 2)) + 0.5 * float((np.log(a)) ** 2)  # slight pull toward 1
        if cost < best_cost:
            best, best_cost = float(a), cost
    return best


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    k /= k.sum()
    pad = width // 2
    xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
    return np.convolve(xp, k, mode="valid")


def convert(src: WorldFrames, src_stats: VoiceStats, ref: VoiceStats, fs: int) -> np.ndarray | None:
    """WORLD frames of the base voice -> samples in the reference voice (approximately).

    None when the reference already sounds like the base voice (same pitch, vocal tract and average
    envelope, within the margins its own clips vary by): resynthesis would only add vocoder artefacts.
    """
    pw = load_pyworld()
    # pitch: log-F0 mean and range
    ratio = float(np.clip(ref.logf0_std / src_stats.logf0_std, *F0_RATIO_CLAMP))
    f0 = src.f0.copy()
    v = f0 > 0
    lf0 = ref.logf0_mean + (np.log(f0[v]) - src_stats.logf0_mean) * ratio
    f0[v] = np.clip(np.exp(lf0), F0_FLOOR, F0_CEIL)

    # timbre: vocal-tract-length warp, then a fixed average-envelope equaliser
    log_sp = np.log(np.maximum(src.sp, 1e-20))
    alpha = best_warp(src_stats.env_shape, ref.env_shape, fs)
    log_sp = warp_envelopes(log_sp, alpha, fs)
    voiced = _voiced_mask(WorldFrames(src.f0, np.exp(log_sp), src.ap, fs))
    if voiced.sum() >= MIN_VOICED_FRAMES:
        warped_shape = _shape(log_sp[voiced]).mean(axis=0)
        bins = log_sp.shape[1]
        width = max(3, int(round(250.0 / (fs / 2.0) * bins)))  # ~250 Hz smoothing
        lim = EQ_LIMIT_DB / 20.0 * np.log(10.0) * 2.0  # dB -> natural log of power
        eq = np.clip(_smooth(ref.env_shape - warped_shape, width), -lim, lim)
        log_sp = log_sp + eq[None, :]
        eq_db = float(np.sqrt(np.mean(eq ** 2))) * 10.0 / np.log(10.0)
        if abs(ref.logf0_mean - src_stats.logf0_mean) < SAME_F0_LOG and abs(alpha - 1.0) < SAME_WARP \
                and eq_db < SAME_EQ_DB:
            log.debug("world: the reference sounds like the base voice; not converting")
            return None
    sp = np.exp(log_sp)
    ap = src.ap

    # speaking rate toward the reference's, when both texts are known
    if ref.chars_per_s and src_stats.chars_per_s:
        stretch = float(np.clip(src_stats.chars_per_s / ref.chars_per_s, *RATE_CLAMP))
        if abs(stretch - 1.0) > 0.02:
            f0, sp, ap = _retime(f0, sp, ap, stretch)

    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs, FRAME_MS)
    log.debug("world: warp %.2f, f0 %.0f->%.0f Hz (range x%.2f)", alpha, np.exp(src_stats.logf0_mean),
              np.exp(ref.logf0_mean), ratio)
    return cast(np.ndarray, y.astype(np.float32))


def _retime(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray,
            stretch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample frames in time: stretch > 1 makes the speech longer (slower)."""
    n = len(f0)
    m = max(2, int(round(n * stretch)))
    pos = np.linspace(0, n - 1, m)
    near = np.clip(np.round(pos).astype(int), 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.clip(lo + 1, 0, n - 1)
    frac = (pos - lo)[:, None]
    sp2 = np.exp(np.log(np.maximum(sp[lo], 1e-20)) * (1 - frac) + np.log(np.maximum(sp[hi], 1e-20)) * frac)
    ap2 = ap[lo] * (1 - frac) + ap[hi] * frac
    f02 = f0[near].copy()  # voicing decisions from the nearest frame, no interpolation across 0
    both = (f0[lo] > 0) & (f0[hi] > 0)
    f02[both] = np.exp(np.log(f0[lo][both]) * (1 - frac[both, 0]) + np.log(f0[hi][both]) * frac[both, 0])
    return np.ascontiguousarray(f02), np.ascontiguousarray(sp2), np.ascontiguousarray(np.clip(ap2, 0.0, 1.0))


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x * (PEAK / peak)).astype(np.float32) if peak > 1e-6 else x.astype(np.float32)


def _reference_key(a: Audio, text: str | None) -> str:
    h = hashlib.sha1(a.samples.tobytes())
    h.update(str(a.sample_rate).encode())
    h.update((text or "").encode())
    return h.hexdigest()


class WorldCloneEngine(SpeechEngine):
    name = "world"
    description = "offline voice-cloning fallback: the offline voice converted with WORLD (LOW quality)"
    default_model = "auto"
    license = "pyworld MIT (WORLD modified-BSD); base voice per its engine"
    uses_cache = True  # the base voice is its own cache entry

    def __init__(self, model: str | None = None, *, cache: EngineCache | None = None):
        super().__init__(model)
        self.cache = cache
        self._refs: OrderedDict[str, VoiceStats] = OrderedDict()
        self._refs_lock = threading.Lock()

    @property
    def base_model(self) -> str:
        from audiosubnet.engines import registry

        if self.model in ("", "auto"):
            return registry.default_model_id()
        return registry.canonical_id(self.model)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            sample_rate=22050,
            max_text_chars=2000,
            batching=True,  # the base voice synthesizes the whole batch in one call
            max_batch=16,
            devices=("cpu",),
            clone=True,
            tts=False,  # needs a reference
            seedable=self._base_seedable,  # the conversion is deterministic; the base voice decides
        )

    @cached_property
    def _base_seedable(self) -> bool:
        from audiosubnet.engines import registry

        try:
            return registry.create(self.base_model).capabilities.seedable
        except Exception:  # an unknown or missing base voice fails at setup, with its own message
            return False

    def estimate_bytes(self) -> int:
        return 16 * 2**20  # analysis buffers; the base voice is its own cache entry

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.cache is None:
            raise EngineError(f"{self.model_id} leases its base voice from a ModelCache; "
                              "lease the engine from one (cache.engine(...))")
        load_pyworld()
        self.device, self.dtype, self.loaded = "cpu", "float32", True

    def unload(self) -> None:
        with self._refs_lock:
            self._refs.clear()
        super().unload()

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        ref = request.reference
        if ref is not None and (ref.duration < 0.5 or not np.isfinite(ref.samples).all()):
            raise InputError("the reference audio is shorter than 0.5 s or not finite")

    def warmup(self) -> None:
        t = np.arange(22050, dtype=np.float32) / 22050
        tone = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2
        self._synthesize([SynthesisRequest("Warm up.", reference=Audio(tone.astype(np.float32), 22050))])

    def _reference_stats(self, ref: Audio, text: str | None, fs: int) -> VoiceStats:
        key = _reference_key(ref, text)
        with self._refs_lock:
            hit = self._refs.get(key)
            if hit is not None:
                self._refs.move_to_end(key)
                return hit
        a = ref.resampled(fs)
        x = a.samples[: int(MAX_REFERENCE_S * fs)]
        stats = voice_stats(analyse(x, fs, aperiodicity=False), text if len(x) == len(a.samples) else None)
        with self._refs_lock:
            self._refs[key] = stats
            while len(self._refs) > 64:
                self._refs.popitem(last=False)
        return stats

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        assert self.cache is not None  # setup() checked it
        base_requests = [SynthesisRequest(text=r.text, voice=r.voice, speed=r.speed, seed=r.seed) for r in requests]
        with self.cache.engine(self.base_model) as base:
            spoken = base.synthesize(base_requests)
        fs = self.capabilities.sample_rate
        out = []
        for r, s in zip(requests, spoken, strict=True):
            assert r.reference is not None  # check() guarantees it (tts=False)
            ref = self._reference_stats(r.reference, r.reference_text, fs)
            s = s.resampled(fs)
            frames = analyse(s.samples, fs)  # (its D4C is wasted when the voices match: rare)
            try:
                src_stats = voice_stats(frames, r.text)
            except InputError:  # the base voice said almost nothing voiced: nothing to convert
                out.append(Audio(_peak_normalise(s.samples), fs))
                continue
            y = convert(frames, src_stats, ref, fs)
            out.append(Audio(_peak_normalise(s.samples if y is None else y), fs))
        return out

    @classmethod
    def catalog(cls) -> list[str]:
        return ["auto", "piper:en_US-joe-medium", "espeak:en-us"]

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        try:
            load_pyworld()
            ok = True
        except DependencyError:
            ok = False
        return ModelStatus(f"{cls.name}:{model}", ok, None, "pip package pyworld + the base voice", cls.license,
                           notes="offline fallback, low quality")
