"""`asn bench`: measurements of speech engines and scorers (no rendering; see report.py).

    from audiosubnet.bench.runner import BenchConfig, run_bench
    result = run_bench(BenchConfig(engines=["piper", "espeak"], batch_sizes=[1, 8]), on_event=print)
    result.to_dict()            # JSON-ready; BenchResult.from_dict() reads it back

Per engine (one row per engine and dtype): cold load (first lease on a fresh EngineCache: registry
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

The measuring lives beside this orchestration: engines.py (engine rows, quality), scorers.py (scorer and
pipeline rows), workloads.py (texts, clips, random-weight models and workloads, anchors), measuring.py
(timing, peak memory, environment), results.py (the row dataclasses).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from audiosubnet.bench.engines import EngineBench, ensure_engine
from audiosubnet.bench.measuring import _is_cuda, environment
from audiosubnet.bench.results import EngineResult, Point, ScorerResult
from audiosubnet.bench.scorers import ScorerBench
from audiosubnet.bench.workloads import (
    OFFLINE_ENGINES,
    OFFLINE_SCORERS,
    RANDOM_ENGINES,
    RANDOM_SCORERS,
    REF_TEXT,
    REF_VOICES,
    SCORERS,
    harmonic_reference,
)

__all__ = ["BenchConfig", "BenchResult", "EngineResult", "Point", "ScorerResult", "run_bench"]

log = logging.getLogger(__name__)

SCHEMA = "asn-bench-1"


# ---- results --------------------------------------------------------------------------------------
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


# ---- the run ---------------------------------------------------------------------------------------
def run_bench(config: BenchConfig, *, on_event: Callable[[str], None] | None = None,
              quality_scoring: Any = None) -> BenchResult:
    """Measure every engine and scorer of `config`. `on_event` gets one line per step (progress);
    `quality_scoring` replaces the Scoring used for quality (tests). Never raises for an engine or
    scorer; raises UsageError/ConfigError for a bad config. Ctrl-C returns the partial result."""
    return _Run(config, on_event, quality_scoring).run()


class _Run(EngineBench, ScorerBench):
    """One bench run: the config checked, the shared resources (work folder, offline voice, clone
    references), and the engine and scorer measurements (engines.py, scorers.py)."""

    def __init__(self, cfg: BenchConfig, on_event, quality_scoring):
        from audiosubnet.errors import UsageError
        from audiosubnet.runtime.device import Placement

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

        from audiosubnet.runtime.device import set_cpu_threads

        set_cpu_threads()

    def _workdir(self) -> Path:
        if self.cfg.workdir is not None:
            Path(self.cfg.workdir).mkdir(parents=True, exist_ok=True)
            return Path(self.cfg.workdir)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="asn-bench-")
        return Path(self._tmp.name)

    def _support_cache(self):
        from audiosubnet.engines.registry import EngineCache

        if self._support is None:
            self._support = EngineCache(None, "cpu", "float32")
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

    def _scorer_dtype(self) -> str:
        half = [d for d in self.dtypes if d != "float32"]
        return half[0] if half and _is_cuda(self.device) else self.dtypes[0]


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
