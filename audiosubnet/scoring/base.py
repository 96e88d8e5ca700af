"""The scorer contract and the item a scorer scores.

A `Scorer` turns a batch of `ScoreItem`s into one dict of metrics per item, in order. Like a speech
engine it is Loadable (runtime/loadable.py) by the shared `ModelCache`:

- `__init__(model)` is cheap (no weights read); `key` (`score:<name>:<model>`) names it in the cache;
- `setup(device, dtype)` loads the model (a no-op when already loaded, e.g. after `use_model`);
  `unload()` drops it; `memory_bytes()` / `estimate_bytes()` feed the cache's budget;
- `score(items) -> list[dict[str, float]]`: exactly the keys in `metrics`, finite floats, one dict
  per item, batched (on the GPU when there is one); `score_details(items)` may add strings per item
  (the ASR's transcript);
- `needs_reference` / `applies_to(item)`: clone-only scorers (speaker similarity) see only items
  that carry a reference;
- `role` and `spec(plan, settings)`: a scorer class registers under an id in the entry-point group
  `audiosubnet.scorers` (registry.py); the pipeline builds its stages from ids and asks each class for
  the `ScorerSpec` to run (model, device, factory).

Callers lease scorers, so each model loads once per process and is evicted under the memory budget
like any engine:

    with cache.lease(cache.key(scorer.key, device, dtype), factory, device=device, dtype=dtype) as s:
        metrics = s.score(items)

    class MyScorer(Scorer):
        name = "my"
        metrics = ("my_metric",)
        def setup(self, device, dtype): ...            # load weights
        def score(self, items): return [{"my_metric": 1.0} for _ in items]

Scorers see items whose `audio` is already a decoded `Audio` that passed the sanity checks (the
pipeline resamples it to 16 kHz once); garbage never reaches them, but they must not assume speech.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from audiosubnet.audio import Audio
from audiosubnet.runtime.loadable import Loadable

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings

Task = Literal["tts", "clone"]
TASKS: tuple[str, ...] = ("tts", "clone")


@dataclass(frozen=True)
class ScoreItem:
    """One response to score.

    `audio` is the candidate: a decoded `Audio` or the raw bytes a miner sent (decoded by the
    pipeline, safely). `reference` is the voice to imitate for clone tasks. `uid`/`hotkey` name the
    miner, so copies across miners (within a batch and against the history) can be told from a
    miner repeating itself; `elapsed_s` (response time) decides who was first among copies.
    """

    text: str
    audio: Audio | bytes | bytearray | memoryview | None
    task: Task = "tts"
    reference: Audio | None = None
    uid: int | None = None
    hotkey: str | None = None
    id: str | None = None
    elapsed_s: float | None = None

    @property
    def miner(self) -> str:
        """Identity used for duplicate detection: hotkey, else uid, else the item id."""
        if self.hotkey:
            return f"hk:{self.hotkey}"
        if self.uid is not None:
            return f"uid:{self.uid}"
        return f"id:{self.id}" if self.id is not None else f"obj:{id(self)}"

    @property
    def label(self) -> str:
        if self.uid is not None:
            return f"uid {self.uid}"
        if self.hotkey:
            return f"hotkey {self.hotkey[:10]}"
        return f"item {self.id}" if self.id is not None else "another item"


@dataclass(frozen=True)
class Plan:
    """Resolved model ids and where each runs."""

    asr: str
    mos: tuple[str, ...]
    speaker: str
    device: str
    dtype: str

    def models(self) -> dict[str, str]:
        return {"asr": self.asr, "mos": ",".join(self.mos), "speaker": self.speaker}


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer a pipeline runs: cached as `score:<name>:<model>` on `device`, made by `factory`."""

    name: str
    model: str
    device: str
    factory: Callable[[], Scorer]


class Scorer(Loadable):
    """A batch of items -> per-item metrics. Loadable by the ModelCache."""

    #: short name; also the cache-key prefix (`score:<name>:<model>`)
    name: ClassVar[str] = ""
    #: metric names this scorer returns (every dict has exactly these keys)
    metrics: ClassVar[tuple[str, ...]] = ()
    #: only items with a reference (clone tasks) are scored
    needs_reference: ClassVar[bool] = False
    #: the pipeline stage a registered scorer fills: "asr" (transcripts), "speaker" (clone items) or "mos"
    #: (naturalness: those named in `score.mos_models`)
    role: ClassVar[str] = "mos"

    def __init__(self, model: str = ""):
        super().__init__()
        self.model = model

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model or '-'} {'loaded' if self.loaded else 'not loaded'}>"

    @property
    def key(self) -> str:
        return f"score:{self.name}:{self.model}"

    @property
    def on_gpu(self) -> bool:
        """True when the heavy work runs on a GPU (the pipeline overlaps CPU scorers with it)."""
        return self.device.startswith("cuda")

    def applies_to(self, item: ScoreItem) -> bool:
        return not self.needs_reference or item.reference is not None

    @classmethod
    def spec(cls, plan: Plan, settings: ScoreSettings) -> ScorerSpec:
        """What the pipeline runs for this registered scorer under `plan` and the `score` settings. The
        default: `cls()` under its own name on the plan's device."""
        return ScorerSpec(cls.name, "", plan.device, cls)

    @abstractmethod
    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """Metrics for each item, in order."""
