"""The SpeechEngine contract.

An engine turns a batch of `SynthesisRequest`s into a list of `Audio`, one per request, in order.
An engine is Loadable (runtime/loadable.py): constructing one is cheap and safe (no weights are
read); `setup(device, dtype)` loads; `unload()` frees. The ModelCache decides when `setup` and
`unload` run.

Third-party engines subclass `SpeechEngine` and register under the entry-point group
`audiosubnet.engines` (see `registry.py`), exactly as the built-ins do.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from audiosubnet.audio import Audio
from audiosubnet.engines import text
from audiosubnet.errors import InputError
from audiosubnet.runtime.loadable import Loadable


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str | None = None
    speed: float = 1.0
    seed: int | None = None
    # Voice cloning: the speaker to imitate (engines with capabilities.clone).
    reference: Audio | None = None
    reference_text: str | None = None


def request_seed(request: SynthesisRequest) -> int:
    """The request's seed, or a fresh random one (so unseeded requests still differ)."""
    if request.seed is not None:
        return int(request.seed) & (2**63 - 1)
    return random.SystemRandom().getrandbits(62)


@dataclass(frozen=True)
class Capabilities:
    sample_rate: int
    max_text_chars: int = 1000
    batching: bool = False  # True when one synthesize() call runs the batch in one forward pass
    max_batch: int = 1  # largest batch worth sending at once
    voices: tuple[str, ...] = ()
    open_voices: bool = False  # accepts voices outside `voices` (e.g. a path to a speaker file)
    default_voice: str | None = None
    devices: tuple[str, ...] = ("cpu",)
    clone: bool = False
    tts: bool = True
    seedable: bool = False
    languages: tuple[str, ...] = ("en",)  # what it speaks: ISO 639 codes ("en", "en_US", "fra"); "*" any
    # the writing systems it reads (ISO 15924: "Latn", "Cyrl", "Hani"...); None: those of `languages`
    scripts: tuple[str, ...] | None = None
    music: bool = False  # text-to-music: takes `MusicRequest`s (engines/music.py)
    max_duration_s: float = 0.0  # music: the longest clip one request may ask for


@dataclass(frozen=True)
class ModelStatus:
    """What `asn models list` shows for one model of one engine."""

    model_id: str
    downloaded: bool
    size_bytes: int | None = None
    source: str = ""  # "pip package", "HF cache", "path", "built-in"
    license: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class SpeechEngine(Loadable):
    #: registry name, the part before ':' in a model id
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: model used when the id names only the engine ("piper" -> "piper:<default_model>")
    default_model: ClassVar[str] = ""
    #: Hugging Face repo prefixes this engine claims for "hf:<repo>" ids
    hf_prefixes: ClassVar[tuple[str, ...]] = ()
    #: model_type values (config.json) this engine claims for local folders
    hf_model_types: ClassVar[tuple[str, ...]] = ()
    license: ClassVar[str] = ""
    #: an engine for tests and benchmarks only: usable by id, never listed to users
    test_only: ClassVar[bool] = False
    #: leases other models (a base voice, an encoder): `__init__(model, *, cache)` is given the ModelCache
    uses_cache: ClassVar[bool] = False
    #: requests per forward pass, for engines that split a batch into passes (set per device in `setup`);
    #: 0: the engine has no such knob
    forward_batch: int = 0

    def __init__(self, model: str | None = None):
        super().__init__()
        self.model = model or self.default_model

    # ---- identity ------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.model}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id} {'loaded' if self.loaded else 'not loaded'}>"

    # ---- contract ------------------------------------------------------------------------
    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Declared capabilities. May read small metadata files, never weights."""

    @abstractmethod
    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        """Engine-specific synthesis of already-checked requests."""

    def cuda_graph_stats(self) -> dict[str, Any]:
        """{stage: cuda_graphs.GraphStats} for an engine that replays CUDA graphs; {} for the others."""
        return {}

    # ---- benchmark hooks -----------------------------------------------------------------
    @contextmanager
    def one_pass(self, size: int) -> Iterator[None]:
        """While inside, a batch of up to `size` requests runs in one forward pass (engines with a
        `forward_batch` knob; the others are unchanged). The benchmark measures batches this way."""
        old = self.forward_batch
        if old:
            self.forward_batch = size
        try:
            yield
        finally:
            if old:
                self.forward_batch = old

    def bench_extras(self, reference: Audio | None) -> dict[str, float]:
        """Engine-specific numbers for the benchmark (e.g. the seconds to turn a reference into a voice
        state); may use the loaded model. {} for most engines."""
        return {}

    # ---- shared behaviour ----------------------------------------------------------------
    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        requests = self._checked(requests)
        if not requests:
            return []
        out = self._synthesize(list(requests))
        if len(out) != len(requests):
            raise RuntimeError(f"{self.model_id} returned {len(out)} clips for {len(requests)} requests")
        return out

    def synthesize_iter(self, requests: Sequence[SynthesisRequest]) -> Generator[tuple[int, Audio], None, None]:
        """As `synthesize`, yielding (index, audio) as each request is done: an engine that finishes the
        requests of a batch at different times (Piper's sentence pool) hands each over at once, so a
        caller can keep it even if the rest is interrupted. Closing the iterator early stops the work."""
        requests = self._checked(requests)
        if requests:
            yield from self._synthesize_iter(requests)

    def _synthesize_iter(self, requests: list[SynthesisRequest]) -> Iterator[tuple[int, Audio]]:
        out = self._synthesize(requests)
        if len(out) != len(requests):
            raise RuntimeError(f"{self.model_id} returned {len(out)} clips for {len(requests)} requests")
        yield from enumerate(out)

    def _checked(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisRequest]:
        if not self.loaded:
            raise RuntimeError(f"{self.model_id} is not set up; lease it from the ModelCache")
        requests = [r if (t := text.prepare(r.text)) == r.text else replace(r, text=t) for r in requests]
        for r in requests:
            self.check(r)
        return requests

    def check(self, request: SynthesisRequest) -> None:
        """Reject a request this engine cannot serve, with a reason a user understands."""
        caps = self.capabilities
        raw = request.text or ""
        if not raw.strip():
            raise InputError("empty text")
        if "\x00" in raw:  # C libraries (espeak-ng, Piper's phonemizer) take NUL-terminated strings
            raise InputError("text contains a NUL character")
        t = text.prepare(raw)
        if not t:
            raise InputError("the text has nothing to pronounce (only emoji or symbols)")
        if len(t) > caps.max_text_chars:
            raise InputError(f"text is {len(t)} characters; {self.model_id} takes at most {caps.max_text_chars}")
        foreign = text.unsupported(t, self.scripts_for(request))
        if foreign:
            raise InputError(f"{self.model_id} speaks {', '.join(caps.languages)}; it cannot read "
                             f"{text.describe(foreign)} in this text")
        if request.voice and caps.voices and not caps.open_voices and request.voice not in caps.voices:
            shown = ", ".join(caps.voices[:8]) + (" ..." if len(caps.voices) > 8 else "")
            raise InputError(f"unknown voice '{request.voice}' for {self.model_id} (voices: {shown})")
        if request.reference is not None and not caps.clone:
            raise InputError(f"{self.model_id} cannot clone voices")
        if request.reference is None and not caps.tts:
            raise InputError(f"{self.model_id} needs a reference voice (clone only)")
        if not (0.25 <= request.speed <= 4.0):
            raise InputError(f"speed {request.speed} is outside 0.25-4.0")

    def scripts_for(self, request: SynthesisRequest | None = None) -> tuple[str, ...] | None:
        """The scripts this engine reads (for `request`'s voice); None: no limit known."""
        caps = self.capabilities
        return caps.scripts if caps.scripts is not None else text.scripts_for_languages(caps.languages)

    def list_voices(self) -> list[str]:
        """Voices to show in `asn voices` (an engine with open voices may list more than `capabilities`)."""
        return list(self.capabilities.voices)

    def warmup(self) -> None:
        """One short synthesis so the first real request does not pay for lazy initialisation."""
        caps = self.capabilities
        if caps.tts:
            self._synthesize([SynthesisRequest(text="Warm up.", voice=caps.default_voice)])

    # ---- model files (asn models list/pull/rm) --------------------------------------------
    @classmethod
    def catalog(cls) -> list[str]:
        """Model names (without the engine prefix) worth listing."""
        return [cls.default_model] if cls.default_model else []

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        return ModelStatus(f"{cls.name}:{model}", downloaded=True, source="built-in", license=cls.license)

    @classmethod
    def pull(cls, model: str) -> ModelStatus:
        return cls.status(model)

    @classmethod
    def remove(cls, model: str) -> int:
        """Delete downloaded files; returns bytes freed."""
        return 0


class EngineLease(Protocol):
    """What a job holds while it runs a batch: an engine in this process (`SpeechEngine`) or one in an engine
    process (`RemoteEngine`, `PooledEngine`)."""

    @property
    def capabilities(self) -> Capabilities: ...

    def check(self, request: SynthesisRequest) -> None: ...

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Any]: ...

    def synthesize_iter(self, requests: Sequence[SynthesisRequest]) -> Iterator[tuple[int, Any]]: ...


class EngineSource(Protocol):
    """Where jobs lease speech engines by model id: the process `EngineCache`, an `IsolatedCache` (one engine
    process) or an `EnginePool` (one per device)."""

    def engine(self, model_id: str) -> AbstractContextManager[EngineLease]: ...
