"""`asn bench`: measurements of speech engines and scorers (no rendering; see report.py).

    from audiosubnet.bench.runner import BenchConfig, run_bench
    result = run_bench(BenchConfig(engines=["piper", "espeak"], batch_sizes=[1, 8]), on_event=print)
    result.to_dict()            # JSON-ready; BenchResult.from_dict() reads it back

Per engine (one row per engine and dtype): cold load (first lease on a fresh ModelCache: registry
create + setup), warm load (a second lease: cache hit), time to first audio (the first synthesize()
of one short sentence after the load: lazy initialisation included), then per batch size B one
synthesize() of B items, each sized to about `duration` seconds of speech (texts sized from the
first call's characters per second; random-weight models have their lengths forced), warmed up,
CUDA synchronised, median of repeats within `budget_s`:
  seconds (per call), audio_s (all items), rtf = seconds / audio_s, x_realtime = audio_s / seconds
  (= audio seconds per wall second), peak_mb (torch.cuda.max_memory_allocated on CUDA, the process's
  peak RSS on CPU), vs_old_subnet (the old subnet's H100 RTF / ours), and with `anchors` the H100
  kernel-level anchor and our % of it. Engines that run one request at a time are measured at
  batch 1 only; batching engines with a `forward_batch` knob run each batch in one forward pass.
  Quality: the fixed QUALITY_PROMPTS through the scoring package (WER/CER, MOS, composite; speaker
  similarity for clone engines against references spoken by the offline voices). Skipped for
  random weights (meaningless).
Per scorer (asr, dnsmos, utmos, speaker, and the whole `pipeline` / `pipeline-clone`): seconds per
call, clips/s and x real time per batch size on `duration`-second clips.

Nothing here raises for an engine or scorer that cannot load or fails: it becomes a row with a
status and a reason. Ctrl-C stops the run and returns what was measured (`interrupted=True`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import logging
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = "asn-bench-1"
OFFLINE_ENGINES = ("piper", "espeak", "world")
RANDOM_ENGINES = ("mms", "speecht5", "bark", "speecht5-clone", "pocket")
SCORERS = ("asr", "dnsmos", "utmos", "speaker", "pipeline", "pipeline-clone")
OFFLINE_SCORERS = ("asr", "dnsmos", "speaker", "pipeline")
RANDOM_SCORERS = ("asr", "dnsmos", "utmos", "speaker", "pipeline")

# H100 kernel-level anchors (../shared/design/PERFORMANCE.md), x real time, random full-size weights.
ANCHORS: dict[tuple[str, int, str], float] = {
    ("mms", 1, "float32"): 690.0, ("mms", 16, "float16"): 2163.0, ("mms", 64, "float16"): 2358.0,
    ("speecht5", 1, "float32"): 4.0, ("speecht5", 16, "float16"): 71.0,
    ("asr", 1, "float16"): 51.0, ("asr", 32, "float16"): 1113.0,
}
ANCHOR_TARGET = 0.6  # issue 7: >= 60% of each anchor through the project's own code
# The old subnet's published H100 table (docs/benchmark.md there): seconds per 30 s of speech / per clip.
OLD_SUBNET = {"tts_rtf": 4.36 / 30, "clone_rtf": 82.15 / 30, "score_s": 1.25, "score_clone_s": 1.30}

# Built-in engines (as in pyproject's entry points), registered when running from a checkout.
BUILTIN_ENGINES = {
    "piper": "audiosubnet.engines.piper:PiperEngine", "espeak": "audiosubnet.engines.espeak:EspeakEngine",
    "speecht5": "audiosubnet.engines.speecht5:SpeechT5Engine", "mms": "audiosubnet.engines.mms:MmsEngine",
    "bark": "audiosubnet.engines.bark:BarkEngine", "fake": "audiosubnet.engines.fake:FakeEngine",
    "world": "audiosubnet.engines.world:WorldCloneEngine",
    "speecht5-clone": "audiosubnet.engines.speecht5_clone:SpeechT5CloneEngine",
    "pocket": "audiosubnet.engines.pocket:PocketCloneEngine",
}

FIRST_TEXT = "The quick brown fox jumps over the lazy dog."
REF_TEXT = "Please call Stella and ask her to bring these things with her from the store."
REF_VOICES = ("en-us+f3", "en-gb", "en-us+m7", "en+f4", "en-gb-scotland", "en-us+klatt")
QUALITY_PROMPTS = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)
PASSAGE = (
    "The history of the river town is written in its bridges. The oldest one, built of grey stone, still "
    "carries carts and bicycles every morning. Farther downstream, a steel bridge opened a century later and "
    "brought the railway, the market, and a crowd of new families. Today children fish from both of them, and "
    "on summer nights the whole town walks across to hear music in the park. A gentle breeze carried the smell "
    "of rain across the valley, and the old mill wheel began to turn again. Every evening the lighthouse keeper "
    "climbed the spiral stairs, wound the clockwork, and lit the great lamp. To get to the station, walk two "
    "blocks north, turn left at the bakery, and cross the bridge over the canal. She opened the letter slowly, "
    "read it twice, and then laughed so hard that the whole room turned around to look at her. Our meeting "
    "moved to Thursday afternoon; bring the quarterly numbers and the first draft of the plan. Please remember "
    "to water the plants on the balcony before you leave for the weekend. The library opens at nine and closes "
    "at six, except on holidays, when it stays closed all day. We walked along the river until the sun went "
    "down, and then we followed the lanterns home. "
)
SENTENCES = tuple(s.strip() + "." for s in PASSAGE.split(". ") if s.strip().strip("."))


# ---- results --------------------------------------------------------------------------------------
@dataclass
class Point:
    """One batch size of one engine or scorer. `seconds` is the median wall time of one call."""

    batch: int
    seconds: float | None = None
    audio_s: float | None = None
    per_item_s: float | None = None
    rtf: float | None = None
    x_realtime: float | None = None
    clips_per_s: float | None = None
    reps: int = 0
    warmed: bool = True
    peak_mb: float | None = None
    anchor_x: float | None = None
    pct_of_anchor: float | None = None
    meets_target: bool | None = None
    vs_old_subnet: float | None = None
    stages_s: dict[str, float] | None = None
    error: str | None = None


@dataclass
class EngineResult:
    spec: str
    label: str
    model_id: str = ""
    engine: str = ""
    kind: str = "tts"  # tts | clone
    weights: str = "real"  # real | random-full | random-small | random-tiny
    device: str = "cpu"
    dtype: str = "float32"
    status: str = "ok"  # ok | unavailable | error | skipped | interrupted
    reason: str | None = None
    sample_rate: int | None = None
    build_s: float | None = None
    cold_load_s: float | None = None
    warm_load_s: float | None = None
    first_audio_s: float | None = None
    weights_mb: float | None = None
    peak_mb: float | None = None
    points: list[Point] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    quality_note: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScorerResult:
    name: str
    model: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    weights: str = "real"
    status: str = "ok"
    reason: str | None = None
    load_s: float | None = None
    clip_s: float | None = None
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    env: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    engines: list[EngineResult] = field(default_factory=list)
    scorers: list[ScorerResult] = field(default_factory=list)
    started: str = ""
    wall_s: float = 0.0
    interrupted: bool = False
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        def make(kind, data: dict):
            names = {f.name for f in fields(kind)}
            kw = {k: v for k, v in data.items() if k in names}
            if "points" in kw:
                kw["points"] = [make(Point, p) for p in kw["points"]]
            return kind(**kw)

        r = make(cls, {k: v for k, v in d.items() if k not in ("engines", "scorers")})
        r.engines = [make(EngineResult, e) for e in d.get("engines", [])]
        r.scorers = [make(ScorerResult, s) for s in d.get("scorers", [])]
        return r


def _clean(x):
    """Round floats for JSON (4 significant decimals where it matters) and drop NaN."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return round(x, 6) if abs(x) < 10 else round(x, 3)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


# ---- configuration ----------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    engines: list[str] | None = None  # None: OFFLINE_ENGINES (RANDOM_ENGINES with random_weights)
    scorers: list[str] | None = None  # None: OFFLINE_SCORERS (RANDOM_SCORERS with random_weights)
    device: str = "auto"
    dtypes: list[str] = field(default_factory=lambda: ["auto"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    duration: float = 30.0
    random_weights: bool = False
    tiny: bool = False  # random weights: tiny configs (CPU, seconds)
    quality: bool = True
    anchors: bool = False  # anchor workloads + "% of anchor" (random full-size weights on CUDA)
    budget_s: float = 10.0  # per point: repeat while under budget
    min_reps: int = 1
    max_reps: int = 5
    bark_tokens: int = 256  # random Bark: cap on semantic tokens (~5 s of audio)
    new_tokens: int = 100  # random Whisper: decoded tokens per clip
    asr_batch: int | None = None  # None: the largest batch size (one pass)
    dnsmos_backend: str = "auto"
    command: str | None = None
    score_settings: Any = None  # a ScoreSettings (not serialised); None: the user's settings
    workdir: Path | None = None  # random models are built here (default: a temp folder)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("score_settings", "workdir")}
        return d


# ---- small helpers --------------------------------------------------------------------------------
def _short(e: BaseException) -> str:
    from audiosubnet.errors import AsnError

    if isinstance(e, AsnError):
        text = e.message + (f" ({e.hint})" if e.hint else "")
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _unavailable(e: BaseException) -> bool:
    from audiosubnet.errors import ConfigError, DependencyError, ModelNotDownloadedError, UnknownModelError

    return isinstance(e, DependencyError | ModelNotDownloadedError | UnknownModelError | ImportError | ConfigError)


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    if _is_cuda(device) and "torch" in sys.modules:
        import torch

        torch.cuda.synchronize(device)


def _free(device: str) -> None:
    gc.collect()
    if _is_cuda(device) and "torch" in sys.modules:
        import torch

        torch.cuda.empty_cache()


def memory_now_mb(device: str) -> float | None:
    """Memory in use now: CUDA allocated on a GPU, the process's RSS on CPU."""
    with contextlib.suppress(Exception):
        if _is_cuda(device):
            import torch

            return torch.cuda.memory_allocated(device) / 2**20
        m = re.search(r"VmRSS:\s+(\d+)\s*kB", Path("/proc/self/status").read_text())
        if m:
            return int(m.group(1)) / 1024
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return None


class _Peak:
    """Peak memory over a block, above `baseline_mb` (the memory in use before the model was loaded, so the
    number is the model's weights + working memory): CUDA max allocated on a GPU, else the process's peak
    RSS (VmHWM reset through /proc/self/clear_refs where Linux allows, else RSS sampled with psutil)."""

    _hwm_ok: bool | None = None

    def __init__(self, device: str, baseline_mb: float | None = None):
        self.device, self.baseline, self.mb = device, baseline_mb or 0.0, None
        self._stop = None

    @classmethod
    def _reset_hwm(cls) -> bool:
        if cls._hwm_ok is False:
            return False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            cls._hwm_ok = True
        except OSError:
            cls._hwm_ok = False
        return cls._hwm_ok

    def __enter__(self) -> _Peak:
        if _is_cuda(self.device):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        elif not self._reset_hwm():
            self._start_sampler()
        return self

    def _start_sampler(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        import threading

        proc, stop, box = psutil.Process(), threading.Event(), [0]

        def sample() -> None:
            while not stop.is_set():
                box[0] = max(box[0], proc.memory_info().rss)
                stop.wait(0.01)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        self._stop = (stop, t, box)

    def __exit__(self, *exc) -> None:
        peak = None
        with contextlib.suppress(Exception):
            if _is_cuda(self.device):
                import torch

                peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            elif self._stop is not None:
                stop, t, box = self._stop
                stop.set()
                t.join()
                peak = box[0] / 2**20 or None
            elif self._hwm_ok:
                m = re.search(r"VmHWM:\s+(\d+)\s*kB", Path("/proc/self/status").read_text())
                peak = int(m.group(1)) / 1024 if m else None
            else:  # the lifetime peak: an upper bound
                import resource

                kib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
        if peak is not None:
            self.mb = max(0.0, peak - self.baseline)


def measure(fn: Callable[[], Any], device: str, budget_s: float, min_reps: int = 1, max_reps: int = 5
            ) -> tuple[list[float], Any, bool]:
    """Warm up once, then time `fn` (CUDA synchronised) until `budget_s` is spent: at least `min_reps`,
    at most `max_reps` timed runs. On CPU a warm-up that alone exceeds the budget is the measurement
    (returned with warmed=False). Returns (seconds of each timed run, last output, warmed)."""

    def timed() -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - t0, out

    _sync(device)
    spent, out = timed()
    if not _is_cuda(device) and spent >= budget_s and min_reps <= 1:
        return [spent], out, False
    times: list[float] = []
    while len(times) < max(1, min_reps) or (spent < budget_s and len(times) < max_reps):
        dt, out = timed()
        times.append(dt)
        spent += dt
    return times, out, True


def letters(n: int, seed: int = 0) -> str:
    """n characters of random lowercase words: one token per character for the random models' tokenizers."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(" ".join(out)) < n:
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))))
    return " ".join(out)[:n].rstrip().ljust(n, "a")


def sized_text(chars: int, offset: int = 0) -> str:
    """About `chars` characters of natural English from PASSAGE (starting at sentence `offset`), cut at a
    word boundary and ending in a full stop."""
    chars = max(10, int(chars))
    sents = SENTENCES[offset % len(SENTENCES):] + SENTENCES[: offset % len(SENTENCES)]
    text = ""
    while len(text) < chars:
        text += " ".join(sents) + " "
    cut = text[:chars]
    cut = cut[: cut.rfind(" ")] if " " in cut[1:] else cut
    return cut.rstrip(" ,;:.") + "."


def speechlike(seconds: float, seed: int, sr: int = 16000):
    """Noise with a syllable-rate envelope, phrase pauses and a pitch-like tint: passes the sanity checks,
    and no two seeds share a fingerprint (clips for random-weight scorers)."""
    import numpy as np

    from audiosubnet.audio import Audio

    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    syll = np.clip(np.sin(2 * np.pi * (3.5 + r.random()) * t + r.random() * 6), 0, None) ** 2
    phrase = (np.sin(2 * np.pi * (0.25 + 0.1 * r.random()) * t + r.random() * 6) > -0.6).astype(np.float64)
    x = r.standard_normal(len(t)) * syll * phrase
    x += 0.5 * np.sin(2 * np.pi * (110 + 60 * r.random()) * t) * syll * phrase
    return Audio((0.15 * x / max(1e-9, np.abs(x).max())).astype(np.float32), sr)


def harmonic_reference(seconds: float = 6.0, sr: int = 24000):
    """A voiced, pitch-gliding harmonic tone: the clone reference when no offline voice is installed."""
    import numpy as np

    from audiosubnet.audio import Audio

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    x = sum(np.sin(2 * np.pi * np.cumsum(f0) / sr * k) / k for k in range(1, 16)) + 0.01 * rng.standard_normal(len(t))
    return Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr)


def ensure_engine(name: str) -> None:
    """Register a built-in engine that has no entry point (a checkout that is not pip-installed)."""
    from audiosubnet.engines import registry
    from audiosubnet.errors import DependencyError

    if name in registry.engine_names() or name not in BUILTIN_ENGINES:
        return
    module, cls = BUILTIN_ENGINES[name].split(":")
    try:
        registry.register(getattr(importlib.import_module(module), cls))
    except ImportError as e:
        raise DependencyError(getattr(e, "name", None) or str(e), "all", f"engine '{name}'") from e


def environment(device: str, dtypes: Sequence[str]) -> dict[str, Any]:
    """What makes two runs comparable: machine, device, library versions, dtype, git commit."""
    from importlib.metadata import PackageNotFoundError, version

    from audiosubnet import __version__

    env: dict[str, Any] = {"asn": __version__, "python": platform.python_version(), "platform": platform.platform(),
                           "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "device": device,
                           "device_name": _cpu_name(), "dtypes": list(dtypes)}
    for dist in ("torch", "transformers", "numpy", "onnxruntime", "ctranslate2", "faster-whisper", "piper-tts",
                 "pocket-tts", "speechmos"):
        with contextlib.suppress(PackageNotFoundError):
            env[dist] = version(dist)
    if "torch" in sys.modules:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if _is_cuda(device) and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(device)
            env.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                       gpu_memory_gib=round(props.total_memory / 2**30, 1),
                       compute_capability=f"{props.major}.{props.minor}")
    env.update(_git())
    return env


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"git_commit": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return {"git_commit": commit.stdout.strip() or None, "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None}


# ---- the run ---------------------------------------------------------------------------------------
def run_bench(config: BenchConfig, *, on_event: Callable[[str], None] | None = None,
              quality_scoring: Any = None) -> BenchResult:
    """Measure every engine and scorer of `config`. `on_event` gets one line per step (progress);
    `quality_scoring` replaces the Scoring used for quality (tests). Never raises for an engine or
    scorer; raises UsageError/ConfigError for a bad config. Ctrl-C returns the partial result."""
    return _Run(config, on_event, quality_scoring).run()


class _Run:
    def __init__(self, cfg: BenchConfig, on_event, quality_scoring):
        from audiosubnet.engines.device import Placement
        from audiosubnet.errors import UsageError

        if not cfg.batch_sizes or any(int(b) < 1 for b in cfg.batch_sizes):
            raise UsageError("batch sizes must be positive integers", hint="e.g. --batch-sizes 1,8,32")
        if cfg.duration <= 0:
            raise UsageError("--duration must be positive")
        scorers = cfg.scorers if cfg.scorers is not None else list(
            RANDOM_SCORERS if cfg.random_weights else OFFLINE_SCORERS)
        unknown = [s for s in scorers if s not in SCORERS]
        if unknown:
            raise UsageError(f"unknown scorer(s): {', '.join(unknown)}", hint=f"Scorers: {', '.join(SCORERS)}.")
        self.cfg = cfg
        self.scorer_names = list(scorers)
        self.engine_specs = list(cfg.engines if cfg.engines is not None else
                                 (RANDOM_ENGINES if cfg.random_weights else OFFLINE_ENGINES))
        place = Placement.resolve(cfg.device, "float32")
        self.device = place.device
        dts = []
        for d in (cfg.dtypes or ["auto"]) if _is_cuda(self.device) else ["float32"]:  # CPU: always fp32
            dt = Placement.resolve(self.device, d).dtype
            if dt not in dts:
                dts.append(dt)
        self.dtypes = dts
        self.batches = sorted({int(b) for b in cfg.batch_sizes})
        self.emit = on_event or (lambda msg: None)
        self.quality_scoring = quality_scoring
        self.quality_error: str | None = None
        self._own_quality_cache = None
        self._stack_base: dict[str, float | None] = {}
        self._clip_source = ""
        self.result = BenchResult(config={**cfg.to_dict(), "dtypes": dts, "device": self.device,
                                          "engines": self.engine_specs, "scorers": self.scorer_names})
        self._built: dict[str, tuple[str, str, float]] = {}
        self._refs = None
        self._support = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- driver ------------------------------------------------------------------------------------
    def run(self) -> BenchResult:
        import datetime

        t0 = time.perf_counter()
        self.result.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        quiet = {name: logging.getLogger(name).level for name in ("pocket_tts", "transformers")}
        for name in quiet:  # random weights: "no EOS" and generation-length warnings by design
            logging.getLogger(name).setLevel(logging.ERROR)
        quiet_hf = _QuietTransformers().__enter__()
        try:
            self._torch_setup()
            self.result.env = environment(self.device, self.dtypes)
            for spec in self.engine_specs:
                for dtype in self.dtypes:
                    self._engine(spec, dtype)
            if self.scorer_names:
                self._scorers()
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.emit("interrupted: reporting what was measured so far")
        finally:
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)
            quiet_hf.__exit__(None, None, None)
            if self._tmp is not None:
                with contextlib.suppress(Exception):
                    self._tmp.cleanup()
            self.result.wall_s = time.perf_counter() - t0
        return self.result

    def _torch_setup(self) -> None:
        """GPU or random-weight runs need torch: import it once, with the CPU threads pinned."""
        if not (_is_cuda(self.device) or self.cfg.random_weights) or importlib.util.find_spec("torch") is None:
            return
        import torch  # noqa: F401

        from audiosubnet.engines.device import set_cpu_threads

        set_cpu_threads()

    def _workdir(self) -> Path:
        if self.cfg.workdir is not None:
            Path(self.cfg.workdir).mkdir(parents=True, exist_ok=True)
            return Path(self.cfg.workdir)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="asn-bench-")
        return Path(self._tmp.name)

    def _support_cache(self):
        from audiosubnet.engines.cache import ModelCache

        if self._support is None:
            self._support = ModelCache(None, "cpu", "float32")
        return self._support

    def _offline_voice(self):
        """(cache, model id) of an installed offline voice, or None."""
        for mid in ("piper:en_US-joe-medium", "espeak:en-us"):
            try:
                ensure_engine(mid.split(":")[0])
                with self._support_cache().engine(mid):
                    return self._support_cache(), mid
            except Exception:
                continue
        return None

    def references(self) -> list:
        """Clone references spoken by the offline voices (espeak variants), else one harmonic tone."""
        if self._refs is None:
            from audiosubnet.engines.base import SynthesisRequest

            refs = []
            try:
                ensure_engine("espeak")
                with self._support_cache().engine("espeak:en-us") as e:
                    refs = [e.synthesize([SynthesisRequest(REF_TEXT, voice=v)])[0] for v in REF_VOICES]
            except Exception as ex:
                log.info("no espeak references (%s); using a harmonic tone", ex)
            self._refs = refs or [harmonic_reference()]
        return self._refs

    # -- engines -----------------------------------------------------------------------------------
    def _resolve(self, spec: str, row: EngineResult) -> str:
        """The model id to load: the spec itself, or a random-weight model built for it."""
        from audiosubnet.engines import registry

        name = spec.split(":", 1)[0].strip().lower()
        ensure_engine(name)
        if name == "hf":
            name = registry.parse_model_id(spec)[0]
            ensure_engine(name)
        row.engine = name
        if not (self.cfg.random_weights and name in RANDOM_ENGINES):
            return registry.canonical_id(spec)
        size = "tiny" if self.cfg.tiny else "full"
        if name == "bark" and not self.cfg.tiny:
            size = "full" if spec.split(":", 1)[-1].strip() == "suno/bark" else "small"
        row.weights = f"random-{size}"
        row.label = f"{spec} (random {size})"
        key = f"{name}:{size}"
        if key not in self._built:
            t0 = time.perf_counter()
            folder = self._build(name, size)
            self._built[key] = (f"{name}:{folder}", size, time.perf_counter() - t0)
            self.emit(f"built a {size} random-weight {name} in {self._built[key][2]:.1f} s")
        row.build_s = self._built[key][2]
        return self._built[key][0]

    def _build(self, name: str, size: str) -> Path:
        from audiosubnet.bench import random_models as rm

        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        root = self._workdir() / f"{name}-{size}"
        if name == "mms":
            return rm.build_mms(root, size)
        if name == "bark":
            return rm.build_bark(root, size, max_semantic_tokens=24 if size == "tiny" else self.cfg.bark_tokens)
        if name == "pocket":
            from audiosubnet.engines.pocket import build_random_pocket

            return build_random_pocket(root, size)
        folder = rm.build_speecht5(root, size)
        if name == "speecht5-clone":  # + the x-vector encoder the engine finds in folder/xvector
            import torch
            from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

            torch.manual_seed(0)
            cfg = WavLMConfig() if size == "full" else WavLMConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(16,) * 7,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 16, 16, 32),
                xvector_output_dim=512, num_buckets=32, max_bucket_distance=80)
            WavLMForXVector(cfg).save_pretrained(folder / "xvector")
            Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                     return_attention_mask=True).save_pretrained(folder / "xvector")
        return folder

    def _engine(self, spec: str, dtype: str) -> None:
        from audiosubnet.engines.cache import ModelCache, set_cache

        row = EngineResult(spec=spec, label=spec, device=self.device, dtype=dtype)
        self.result.engines.append(row)  # before measuring: an interrupted row still shows
        try:
            row.model_id = self._resolve(spec, row)
        except KeyboardInterrupt:
            row.status = "interrupted"
            raise
        except Exception as e:
            row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
            self.emit(f"{row.label}: {row.status}: {row.reason}")
            return
        device = self.device
        with contextlib.suppress(Exception):
            from audiosubnet.engines import registry

            devices = registry.create(row.model_id).capabilities.devices
            if _is_cuda(device) and not any(d.startswith("cuda") for d in devices):
                device, row.device = "cpu", "cpu"
                row.notes.append("runs on the CPU only")
        cache = ModelCache(None, device, dtype)
        old = set_cache(cache)  # engines that lease helpers (world's base voice, x-vectors) use this cache too
        try:
            self._engine_measure(row, cache, device, dtype)
        except KeyboardInterrupt:
            if not row.points:
                row.status = "interrupted"
            raise
        except Exception as e:
            if row.status == "ok" and not row.points:
                row.status = "unavailable" if _unavailable(e) else "error"
            row.reason = row.reason or _short(e)
            self.emit(f"{row.label}: {row.status}: {row.reason}")
        finally:
            set_cache(old)
            cache.clear()
            _free(device)

    def _engine_measure(self, row: EngineResult, cache, device: str, dtype: str) -> None:
        from audiosubnet.engines.base import SynthesisRequest

        gc.collect()
        row.extra["baseline_mb"] = memory_now_mb(device)
        t0 = time.perf_counter()
        with cache.engine(row.model_id) as engine:
            row.cold_load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with cache.engine(row.model_id):
                row.warm_load_s = time.perf_counter() - t0
            caps = engine.capabilities
            row.kind = "clone" if caps.clone else "tts"
            row.sample_rate, row.model_id = caps.sample_rate, engine.model_id
            row.device, row.dtype = engine.device or device, engine.dtype or dtype
            if any(o is not row and (o.spec, o.device, o.dtype) == (row.spec, row.device, row.dtype) and o.points
                   for o in self.result.engines):  # runs in one dtype whatever is asked (CPU engines, pocket)
                row.status, row.reason = "skipped", f"runs in {row.dtype} on {row.device} only: measured above"
                return
            with contextlib.suppress(Exception):
                row.weights_mb = engine.memory_bytes() / 2**20
            self.emit(f"{row.label} [{row.device}/{row.dtype}]: cold load {row.cold_load_s:.2f} s")
            ref = self.references()[0] if caps.clone else None
            texts, note = self._workload(row, engine)
            if note:
                row.notes.append(note)
            first = FIRST_TEXT
            t0 = time.perf_counter()
            audio = engine.synthesize([SynthesisRequest(first, reference=ref, reference_text=REF_TEXT if ref else None,
                                                        seed=0)])[0]
            _sync(row.device)
            row.first_audio_s = time.perf_counter() - t0
            if not texts:
                texts = self._sized_texts(row, engine, first, audio, ref)
            self._extras(row, engine, ref)
            self.emit(f"{row.label}: first audio {row.first_audio_s:.2f} s")
            skipped = []
            for b in self.batches:
                if b > 1 and not caps.batching:
                    skipped.append(b)
                    continue
                row.points.append(self._point(row, engine, b, texts, ref))
            if skipped:
                row.notes.append(f"runs one request at a time: batch {', '.join(map(str, skipped))} not measured")
            peaks = [p.peak_mb for p in row.points if p.peak_mb]
            row.peak_mb = max(peaks) if peaks else None
            if row.points and all(p.error for p in row.points):
                row.status, row.reason = "error", row.points[0].error
            self._quality(row, engine)

    def _sized_texts(self, row: EngineResult, engine, first: str, audio, ref) -> list[str]:
        """Real weights: texts of about `duration` seconds for this voice, from the first call's characters
        per second, refined once with one item of that size when that is cheap (under the budget)."""
        from audiosubnet.engines.base import SynthesisRequest

        limit = int(engine.capabilities.max_text_chars * 0.95)
        want = self.cfg.duration * len(first) / max(0.05, audio.duration)
        chars = min(int(want), limit)
        if (row.first_audio_s or 0) * chars / len(first) < self.cfg.budget_s / 2:
            probe = engine.synthesize([SynthesisRequest(sized_text(chars), reference=ref, seed=0,
                                                        reference_text=REF_TEXT if ref is not None else None)])[0]
            want = chars * self.cfg.duration / max(0.05, probe.duration)
            chars = min(int(want), limit)
        if chars < want - 1:
            row.notes.append(f"texts capped at {chars} characters (the engine's limit)")
        return [sized_text(chars, offset=i) for i in range(4)]

    def _point(self, row: EngineResult, engine, b: int, texts: list[str], ref) -> Point:
        from audiosubnet.engines.base import SynthesisRequest

        reqs = [SynthesisRequest(texts[i % len(texts)], seed=i, reference=ref,
                                 reference_text=REF_TEXT if ref is not None else None) for i in range(b)]
        knobs = [(o, o.forward_batch) for o in (engine, getattr(engine, "inner", None)) if hasattr(o, "forward_batch")]
        p = Point(batch=b)
        try:
            for o, _ in knobs:  # the whole batch in one forward pass
                o.forward_batch = b
            with _Peak(row.device, row.extra.get("baseline_mb")) as peak:
                times, audios, warmed = measure(lambda: engine.synthesize(reqs), row.device, self.cfg.budget_s,
                                                self.cfg.min_reps, self.cfg.max_reps)
            p.seconds, p.reps, p.warmed, p.peak_mb = statistics.median(times), len(times), warmed, peak.mb
            p.audio_s = sum(a.duration for a in audios)
            p.per_item_s = p.audio_s / b
            p.rtf = p.seconds / max(1e-9, p.audio_s)
            p.x_realtime = p.audio_s / max(1e-9, p.seconds)
            old = OLD_SUBNET["clone_rtf" if row.kind == "clone" else "tts_rtf"]
            p.vs_old_subnet = old / p.rtf if p.rtf else None
            anchor = self._anchor(row.engine, b, row.dtype, row.weights, row.device)
            if anchor:
                p.anchor_x, p.pct_of_anchor = anchor, 100 * p.x_realtime / anchor
                p.meets_target = p.x_realtime >= ANCHOR_TARGET * anchor
            self.emit(f"{row.label} b{b}: RTF {p.rtf:.4f}, {p.x_realtime:.1f}x real time ({p.reps} reps)")
        except KeyboardInterrupt:
            raise
        except Exception as e:
            p.error = _short(e)
            self.emit(f"{row.label} b{b}: failed: {p.error}")
            _free(row.device)
        finally:
            for o, value in knobs:
                o.forward_batch = value
        return p

    def _anchor(self, name: str, b: int, dtype: str, weights: str, device: str) -> float | None:
        if not (self.cfg.anchors and weights == "random-full" and _is_cuda(device)):
            return None
        return ANCHORS.get((name, b, dtype))

    def _workload(self, row: EngineResult, engine) -> tuple[list[str], str | None]:
        """Texts for the timed items, and engine settings that force each item's length, for random
        weights (which would otherwise stop at random points). [] = size from the voice (real weights)."""
        if row.weights == "real":
            return [], None
        name, cfg = row.engine, self.cfg
        tiny = row.weights == "random-tiny"
        if name == "mms":
            m = engine._model
            m.config.use_stochastic_duration_prediction = False
            m.duration_predictor = _fixed_durations(2)
            hop, sr = math.prod(m.config.upsample_rates), int(m.config.sampling_rate)
            secs = 30.0 if cfg.anchors and not tiny else cfg.duration
            n = min(math.ceil((secs * sr / (2 * hop) - 1) / 2), engine.capabilities.max_text_chars)
            return [letters(n, i) for i in range(4)], "durations forced to 2 frames per token"
        if name in ("speecht5", "speecht5-clone"):
            inner = getattr(engine, "inner", engine)
            inner.threshold = 2.0  # the random stop head never fires: length = the forced ratio
            target = 30 if tiny else 120
            texts = []
            for i in range(4):
                n = target
                for _ in range(3):
                    n += target - len(inner._token_ids(letters(n, i)))
                texts.append(letters(max(2, n), i))
            tokens = len(inner._token_ids(texts[0]))
            r = int(inner._model.config.reduction_factor)
            voc = inner._vocoder.config
            steps = 480 if cfg.anchors and not tiny else math.ceil(
                cfg.duration * voc.sampling_rate / (math.prod(voc.upsample_rates) * r))
            steps = min(steps, inner._fast["alpha_pe"].shape[0] - 2)
            inner.minlenratio = inner.maxlenratio = steps * r / tokens + 1e-6
            return texts, f"{tokens} tokens, stop head off, {steps} decoder steps per item"
        if name == "pocket":
            engine._tts.eos_threshold = 1e9  # never stop early: the package's length limit for the text
            words = "the quick brown fox jumps over a lazy dog while seven birds sing near the old river bank " * 9
            n = max(5, round((cfg.duration - 0.7) / 0.566))  # ~0.57 s per character (measured)
            return [words[:n].strip() + "."], "EOS off: length set by the text"
        if name == "bark":
            return ["Hello, this is a test of the speech engine on random weights."], \
                f"semantic tokens capped at {24 if tiny else cfg.bark_tokens}"
        return [], None

    def _extras(self, row: EngineResult, engine, ref) -> None:
        """Engine-specific numbers: the time Pocket TTS takes to turn a reference into a voice state."""
        if ref is not None and hasattr(engine, "_states") and hasattr(engine, "_state"):
            with contextlib.suppress(Exception):
                engine._states.clear()
                t0 = time.perf_counter()
                engine._state(ref)
                _sync(row.device)
                row.extra["voice_prompt_s"] = time.perf_counter() - t0

    # -- quality -----------------------------------------------------------------------------------
    def _quality(self, row: EngineResult, engine) -> None:
        if not self.cfg.quality:
            row.quality_note = "skipped (quality off)"
            return
        if row.weights != "real":
            row.quality_note = "skipped: random weights (meaningless)"
            return
        if self.quality_error:
            row.quality_note = f"unavailable: {self.quality_error}"
            return
        from audiosubnet.engines.base import SynthesisRequest
        from audiosubnet.scoring import ScoreItem

        clone = row.kind == "clone"
        refs = self.references() if clone else [None]
        reqs = [SynthesisRequest(t, seed=i, reference=refs[i % len(refs)],
                                 reference_text=REF_TEXT if clone else None) for i, t in enumerate(QUALITY_PROMPTS)]
        try:
            caps = engine.capabilities
            step = max(1, caps.max_batch) if caps.batching else 1
            audios = []
            for i in range(0, len(reqs), step):
                audios += engine.synthesize(reqs[i:i + step])
        except KeyboardInterrupt:
            raise
        except Exception as e:
            row.quality_note = f"failed to synthesize the prompts: {_short(e)}"
            return
        items = [ScoreItem(r.text, a, task="clone" if clone else "tts", reference=r.reference, uid=0, hotkey="bench",
                           id=str(i)) for i, (r, a) in enumerate(zip(reqs, audios, strict=True))]
        try:
            scoring = self._quality_scoring()
            results = scoring.score(items, remember=False)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            self.quality_error = _short(e)
            row.quality_note = f"unavailable: {self.quality_error}"
            self.emit(f"quality scoring unavailable: {self.quality_error}")
            return
        row.quality = summarize_quality(results, getattr(scoring, "settings", None))
        row.quality["scoring"] = getattr(scoring, "version", "")
        self.emit(f"{row.label}: quality " + ", ".join(f"{k} {v:.3f}" for k, v in row.quality.items()
                                                       if isinstance(v, float)))

    def _quality_scoring(self):
        if self.quality_scoring is None:
            from audiosubnet.engines.cache import ModelCache
            from audiosubnet.scoring import Scoring

            settings = self.cfg.score_settings or _user_score_settings()
            self._own_quality_cache = ModelCache(None, self.device, self._scorer_dtype())
            self.quality_scoring = Scoring(settings, cache=self._own_quality_cache)
        return self.quality_scoring

    def _scorer_dtype(self) -> str:
        half = [d for d in self.dtypes if d != "float32"]
        return half[0] if half and _is_cuda(self.device) else self.dtypes[0]

    # -- scorers -----------------------------------------------------------------------------------
    def _scorers(self) -> None:
        from audiosubnet.engines.cache import ModelCache
        from audiosubnet.scoring import Scoring

        if self._own_quality_cache is not None:  # the quality models are not part of the scorers' memory
            self._own_quality_cache.clear()
        gc.collect()
        self._stack_base = {d: memory_now_mb(d) for d in {self.device, "cpu"}}
        dtype = self._scorer_dtype()
        weights = ("random-tiny" if self.cfg.tiny else "random-full") if self.cfg.random_weights else "real"
        individual = [n for n in self.scorer_names if not n.startswith("pipeline")]
        try:
            settings = self._score_settings()
            cache = ModelCache(None, self.device, dtype)
            scoring = Scoring(settings, cache=cache)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            for n in self.scorer_names:
                self.result.scorers.append(ScorerResult(n, device=self.device, dtype=dtype, weights=weights,
                                                        status="unavailable" if _unavailable(e) else "error",
                                                        reason=_short(e)))
            return
        build_note = None
        if self.cfg.random_weights:
            from audiosubnet.bench.random_scorers import install_random_scorers

            t0 = time.perf_counter()
            try:
                installed = install_random_scorers(scoring, tiny=self.cfg.tiny, new_tokens=self.cfg.new_tokens)
                build_note = f"random-weight stand-ins built in {time.perf_counter() - t0:.1f} s"
                self.emit(f"scorers: {build_note}: {', '.join(installed.values())}")
            except KeyboardInterrupt:
                raise
            except Exception as e:
                build_note = f"random-weight stand-ins failed: {_short(e)}"
                self.emit(build_note)
        items = self._clips(max(self.batches))
        clip_s = statistics.fmean(it.audio.duration for it in items)
        self.emit(f"scorers: {len(items)} clips of {clip_s:.1f} s on average ({self._clip_source})")
        failed: set[str] = set()
        specs = {key.split(":")[1]: (key, dev, dt, f) for key, dev, dt, f in scoring.specs(clone=True)}
        for name in individual:
            row = ScorerResult(name, device=self.device, dtype=dtype, weights=weights, clip_s=clip_s)
            if not self.result.scorers:
                row.notes.append(f"clips: {self._clip_source}")
            if build_note and name != "dnsmos":
                row.notes.append(build_note)
                build_note = None
            self.result.scorers.append(row)
            if name not in specs:
                row.status, row.reason = "unavailable", f"not in the scoring plan ({scoring.plan})"
                failed.add(name)
                continue
            self._scorer(row, scoring, specs[name], items, failed)
        for name in [n for n in self.scorer_names if n.startswith("pipeline")]:
            row = ScorerResult(name, device=self.device, dtype=dtype, weights=weights, clip_s=clip_s)
            self.result.scorers.append(row)
            self._pipeline(row, settings, cache, items, failed, clone=name == "pipeline-clone")

    def _score_settings(self):
        """The user's scoring settings with the models asked for, one ASR pass per batch, and sanity limits
        loose enough for synthetic clips. Random weights: the GPU stack (its stand-ins), on any device."""
        s = self.cfg.score_settings or _user_score_settings()
        mos = [m for m in ("dnsmos", "utmos") if m in self.scorer_names]
        if not mos:
            mos = ["dnsmos", "utmos"] if self.cfg.random_weights else ["dnsmos"]
        update = dict(mos_models=",".join(mos), dnsmos_backend=self.cfg.dnsmos_backend,
                      asr_batch=min(256, self.cfg.asr_batch or max(16, max(self.batches))),
                      max_seconds=max(60.0, self.cfg.duration + 1), min_chars_per_s=1.0, max_chars_per_s=60.0)
        if self.cfg.random_weights:
            update["preset"] = "gpu"
        return s.model_copy(update=update)

    def _clips(self, n: int) -> list:
        """n distinct `duration`-second clips with their texts (tts items, each with a clone reference):
        the offline voice reading PASSAGE sentences in a different order per clip; synthetic speech-like
        noise with random weights (their ASR decodes a fixed number of tokens anyway) or without a voice."""
        import numpy as np

        from audiosubnet.audio import Audio
        from audiosubnet.engines.base import SynthesisRequest
        from audiosubnet.scoring import ScoreItem

        secs = self.cfg.duration
        voice = None if self.cfg.random_weights else self._offline_voice()
        items = []
        if voice is not None:
            cache, mid = voice
            self._clip_source = f"{mid} reading the passage's sentences, a different order per clip"
            with cache.engine(mid) as e:
                audios = e.synthesize([SynthesisRequest(s) for s in SENTENCES])
            sr = audios[0].sample_rate
            gap = np.zeros(int(0.2 * sr), np.float32)
            for i in range(n):
                parts, texts, total, k = [], [], 0.0, i
                while total < secs:
                    a = audios[k % len(audios)]
                    parts += [a.samples, gap]
                    texts.append(SENTENCES[k % len(SENTENCES)])
                    total += a.duration + 0.2
                    k += 3
                items.append(ScoreItem(" ".join(texts), Audio(np.concatenate(parts), sr),
                                       reference=audios[(i + 1) % len(audios)], uid=0, hotkey="bench", id=str(i)))
            return items
        self._clip_source = "synthetic speech-like noise" + (" (random weights)" if self.cfg.random_weights else
                                                             " (no offline voice installed)")
        ref = speechlike(8.0, 10_000)
        for i in range(n):
            r = np.random.default_rng(i)
            words = " ".join(r.choice(PASSAGE.lower().replace(".", "").replace(",", "").split(),
                                      size=max(3, int(secs * 2.2))))
            items.append(ScoreItem(words.capitalize() + ".", speechlike(secs, i), reference=ref, uid=0,
                                   hotkey="bench", id=str(i)))
        return items

    def _scorer(self, row: ScorerResult, scoring, spec, items: list, failed: set[str]) -> None:
        from audiosubnet.audio import Audio
        from audiosubnet.scoring import dsp

        key, dev, dt, factory = spec
        row.model, row.device, row.dtype = key.split("@")[0].split(":", 2)[2], dev, dt
        gc.collect()
        loaded = scoring.cache.is_loaded(key.split("@")[0])  # random stand-ins are built together, up front
        base = self._stack_base.get(dev) if loaded else memory_now_mb(dev)
        try:
            t0 = time.perf_counter()
            with scoring.cache.lease(key, factory, device=dev, dtype=dt) as scorer:
                row.load_s = time.perf_counter() - t0 if not self.cfg.random_weights or row.name == "dnsmos" else None
                self.emit(f"scorer {row.name} ({row.model}) on {dev}/{dt}" +
                          (f": loaded in {row.load_s:.2f} s" if row.load_s is not None else ""))
                prepared = [replace(it, audio=Audio(dsp.to_16k(it.audio), dsp.SR)) for it in items]
                if not scorer.needs_reference:
                    prepared = [replace(it, reference=None) for it in prepared]
                for b in self.batches:
                    row.points.append(self._score_point(row, lambda b=b: scorer.score(prepared[:b]), b, items, base))
        except KeyboardInterrupt:
            raise
        except Exception as e:
            row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
            failed.add(row.name)
            self.emit(f"scorer {row.name}: {row.status}: {row.reason}")
            return
        if row.points and all(p.error for p in row.points):
            row.status, row.reason = "error", row.points[0].error
            failed.add(row.name)

    def _pipeline(self, row: ScorerResult, settings, cache, items: list, failed: set[str], clone: bool) -> None:
        from audiosubnet.scoring import Scoring

        mos = [m for m in settings.mos_models.split(",") if m and m not in failed]
        if "asr" in failed or not mos or (clone and "speaker" in failed):
            row.status, row.reason = "unavailable", "a model it needs did not load (see the rows above)"
            return
        try:
            scoring = Scoring(settings.model_copy(update={"mos_models": ",".join(mos)}), cache=cache)
            row.model = ",".join(f"{k}={v}" for k, v in scoring.plan.models().items()
                                 if k != "speaker" or clone)
            batch = [replace(it, task="clone") if clone else replace(it, reference=None) for it in items]
            stages: list[dict[str, float]] = []
            last: list = []

            def call(b):
                last[:] = scoring.score(batch[:b], remember=False)
                stages.append(dict(scoring.timings))
                return last

            for b in self.batches:
                stages.clear()
                p = self._score_point(row, lambda b=b: call(b), b, items, self._stack_base.get(row.device))
                if stages and not p.error:
                    p.stages_s = {k.replace("score:", "").split(":")[0]:
                                  statistics.median(s.get(k, 0.0) for s in stages) for k in stages[-1]}
                    old = OLD_SUBNET["score_clone_s" if clone else "score_s"]
                    p.vs_old_subnet = p.clips_per_s * old if p.clips_per_s else None
                    zeroed = [r.reason for r in last if r.reason and "WER" not in r.reason]
                    if zeroed:
                        row.notes.append(f"batch {b}: {len(zeroed)} clips scored 0 before the models ({zeroed[0]})")
                row.points.append(p)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            row.status, row.reason = ("unavailable" if _unavailable(e) else "error"), _short(e)
            self.emit(f"scorer {row.name}: {row.status}: {row.reason}")

    def _score_point(self, row: ScorerResult, fn: Callable[[], Any], b: int, items: list,
                     baseline_mb: float | None) -> Point:
        p = Point(batch=b)
        try:
            with _Peak(row.device, baseline_mb) as peak:
                times, _, warmed = measure(fn, row.device, self.cfg.budget_s, self.cfg.min_reps, self.cfg.max_reps)
            p.seconds, p.reps, p.warmed, p.peak_mb = statistics.median(times), len(times), warmed, peak.mb
            p.audio_s = sum(it.audio.duration for it in items[:b])
            p.per_item_s = p.audio_s / b
            p.clips_per_s = b / max(1e-9, p.seconds)
            p.x_realtime = p.audio_s / max(1e-9, p.seconds)
            p.rtf = p.seconds / max(1e-9, p.audio_s)
            anchor = None
            if (self.cfg.anchors and row.weights == "random-full" and _is_cuda(row.device) and row.name == "asr"
                    and abs(self.cfg.duration - 30) < 0.5 and self.cfg.new_tokens == 100):
                anchor = ANCHORS.get(("asr", b, row.dtype))
            if anchor:
                p.anchor_x, p.pct_of_anchor = anchor, 100 * p.x_realtime / anchor
                p.meets_target = p.x_realtime >= ANCHOR_TARGET * anchor
            self.emit(f"scorer {row.name} b{b}: {p.clips_per_s:.2f} clips/s, {p.x_realtime:.1f}x real time "
                      f"({p.reps} reps)")
        except KeyboardInterrupt:
            raise
        except Exception as e:
            p.error = _short(e)
            self.emit(f"scorer {row.name} b{b}: failed: {p.error}")
            _free(row.device)
        return p


def summarize_quality(results: Sequence[Any], settings: Any = None) -> dict[str, Any]:
    """Means over the prompts of WER, CER, MOS (the composite's naturalness MOS), DNSMOS OVRL, UTMOS,
    speaker similarity and the composite; how many scored 0 and the first reason."""
    from audiosubnet.scoring.composite import mos

    out: dict[str, Any] = {"n": len(results), "zeroed": sum(1 for r in results if r.reason)}
    for k in ("wer", "cer", "dnsmos_ovrl", "utmos", "speaker_sim"):
        vals = [r.metrics[k] for r in results if k in r.metrics]
        if vals:
            out[k] = float(statistics.fmean(vals))
    w_u, w_d = (settings.weight_utmos, settings.weight_dnsmos) if settings is not None else (0.75, 0.25)
    moses = [m for r in results if (m := mos(r.metrics, w_u, w_d)) is not None]
    if moses:
        out["mos"] = float(statistics.fmean(moses))
    out["composite"] = float(statistics.fmean(r.composite for r in results)) if results else None
    reasons = [r.reason for r in results if r.reason]
    if reasons:
        out["first_reason"] = reasons[0]
    return out


def _user_score_settings():
    from audiosubnet.config import ScoreSettings, load_settings

    try:
        return load_settings().score
    except Exception as e:
        log.warning("using default score settings: %s", e)
        return ScoreSettings()


class _QuietTransformers:
    """transformers' warnings off for the run (random weights trigger generation-length warnings by design),
    without importing transformers for runs that never need it."""

    def __enter__(self) -> _QuietTransformers:
        self.env = os.environ.get("TRANSFORMERS_VERBOSITY")
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        self.old = None
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            self.old = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc) -> None:
        if self.env is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = self.env
        if "transformers" in sys.modules:
            with contextlib.suppress(Exception):
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity(self.old if self.old is not None else hf_logging.WARNING)


def _fixed_durations(frames: int):
    """A deterministic VITS duration predictor giving every token `frames` frames (as the H100 anchor)."""
    import torch

    class FixedDurations(torch.nn.Module):
        def forward(self, inputs, padding_mask, global_conditioning=None):
            return torch.log(torch.full_like(padding_mask, float(frames)))

    return FixedDurations()
