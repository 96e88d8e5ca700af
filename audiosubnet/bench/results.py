"""The data of an `asn bench` run: its BenchConfig, and the BenchResult holding one EngineResult per engine and
dtype and one ScorerResult per scorer, each with one Point per batch size (BenchResult reads them back from
JSON). Plain dataclasses: every other bench module may import this one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from audiosubnet.config import ScoreSettings

    D = TypeVar("D", bound=DataclassInstance)

SCHEMA = "asn-bench-1"


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
    kind: str = "tts"  # tts | clone | music
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
        d: dict[str, Any] = _clean(asdict(self))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        def make(kind: type[D], data: dict[str, Any]) -> D:
            names = {f.name for f in fields(kind)}
            kw = {k: v for k, v in data.items() if k in names}
            if "points" in kw:
                kw["points"] = [make(Point, p) for p in kw["points"]]
            return kind(**kw)

        r = make(cls, {k: v for k, v in d.items() if k not in ("engines", "scorers")})
        r.engines = [make(EngineResult, e) for e in d.get("engines", [])]
        r.scorers = [make(ScorerResult, s) for s in d.get("scorers", [])]
        return r


def _clean(x: Any) -> Any:
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
    score_settings: ScoreSettings | None = None  # (not serialised; the command passes the user's); None: defaults
    workdir: Path | None = None  # random models are built here (default: a temp folder)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("score_settings", "workdir")}
        return d
