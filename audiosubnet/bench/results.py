"""The rows of an `asn bench` result: one EngineResult per engine and dtype, one ScorerResult per scorer, each
with one Point per batch size. runner.BenchResult holds them (and reads them back from JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
