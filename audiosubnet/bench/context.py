"""The explicit state of one `asn bench` run. The measurements (engines.py, scorers.py, music.py) are plain
functions that take it as their first argument; runner.py builds it, runs them and closes it.

It holds the checked config, the device and dtypes, the result being filled, the progress callback, and the
resources the measurements share: the work folder (random-weight models), a small CPU cache for the offline
voice, the clone references, the quality Scoring and the random-weight models already built.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audiosubnet.bench.measuring import _is_cuda
from audiosubnet.bench.results import BenchConfig, BenchResult
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

if TYPE_CHECKING:
    from audiosubnet.audio import Audio
    from audiosubnet.config import ScoreSettings
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.scoring import Scoring

log = logging.getLogger(__name__)


@dataclass
class BenchContext:
    cfg: BenchConfig
    device: str
    dtypes: list[str]
    batches: list[int]
    engine_specs: list[str]
    scorer_names: list[str]
    result: BenchResult
    emit: Callable[[str], None]
    quality_scoring: Scoring | None = None  # the Scoring that rates engine outputs (built on first use unless given)
    quality_error: str | None = None  # why quality scoring is unavailable, once known
    quality_cache: EngineCache | None = None  # the quality Scoring's cache (cleared before the scorer rows)
    built: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # random models: (model id, size, s)
    stack_base: dict[str, float | None] = field(default_factory=dict)  # memory before the scorers, per device
    clip_source: str = ""  # what the scorers' clips are
    _refs: list[Audio] | None = None
    _support: EngineCache | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def create(cls, cfg: BenchConfig, on_event: Callable[[str], None] | None = None,
               quality_scoring: Scoring | None = None) -> BenchContext:
        """Check `cfg` (UsageError for a bad one) and resolve the device, dtypes and what to measure."""
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
        engine_specs = list(cfg.engines if cfg.engines is not None else
                            (RANDOM_ENGINES if cfg.random_weights else OFFLINE_ENGINES))
        device = Placement.resolve(cfg.device, "float32").device
        dts: list[str] = []
        for d in (cfg.dtypes or ["auto"]) if _is_cuda(device) else ["float32"]:  # CPU: always fp32
            dt = Placement.resolve(device, d).dtype
            if dt not in dts:
                dts.append(dt)
        result = BenchResult(config={**cfg.to_dict(), "dtypes": dts, "device": device,
                                     "engines": engine_specs, "scorers": list(scorers)})
        return cls(cfg=cfg, device=device, dtypes=dts, batches=sorted({int(b) for b in cfg.batch_sizes}),
                   engine_specs=engine_specs, scorer_names=list(scorers), result=result,
                   emit=on_event or (lambda msg: None), quality_scoring=quality_scoring)

    @property
    def score_settings(self) -> ScoreSettings:
        """The ScoreSettings of the run: the config's (the command passes the user's), else the defaults."""
        from audiosubnet.config import ScoreSettings

        return self.cfg.score_settings if self.cfg.score_settings is not None else ScoreSettings()

    def workdir(self) -> Path:
        """Where random-weight models are built: the config's folder, else a temporary one (removed by close)."""
        if self.cfg.workdir is not None:
            Path(self.cfg.workdir).mkdir(parents=True, exist_ok=True)
            return Path(self.cfg.workdir)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="asn-bench-")
        return Path(self._tmp.name)

    def support_cache(self) -> EngineCache:
        """A CPU cache for the offline voices that read clips and references (not part of any measurement)."""
        from audiosubnet.engines.registry import EngineCache

        if self._support is None:
            self._support = EngineCache(None, "cpu", "float32")
        return self._support

    def offline_voice(self) -> tuple[EngineCache, str] | None:
        """(cache, model id) of an installed offline voice, or None."""
        for mid in ("piper:en_US-joe-medium", "espeak:en-us"):
            try:
                with self.support_cache().engine(mid):
                    return self.support_cache(), mid
            except Exception:
                continue
        return None

    def references(self) -> list[Audio]:
        """Clone references spoken by the offline voices (espeak variants), else one harmonic tone."""
        if self._refs is None:
            from audiosubnet.engines.base import SynthesisRequest

            refs: list[Audio] = []
            try:
                with self.support_cache().engine("espeak:en-us") as e:
                    refs = [e.synthesize([SynthesisRequest(REF_TEXT, voice=v)])[0] for v in REF_VOICES]
            except Exception as ex:
                log.info("no espeak references (%s); using a harmonic tone", ex)
            self._refs = refs or [harmonic_reference()]
        return self._refs

    def scorer_dtype(self) -> str:
        """The dtype scorers run in: the first half precision asked for on CUDA, else the first dtype."""
        half = [d for d in self.dtypes if d != "float32"]
        return half[0] if half and _is_cuda(self.device) else self.dtypes[0]

    def close(self) -> None:
        """Free the shared resources: the support cache and the temporary work folder."""
        if self._support is not None:
            self._support.clear()
        if self._tmp is not None:
            with contextlib.suppress(Exception):
                self._tmp.cleanup()
