"""The seams of the miner's HTTP edge (`miner/app.py`), as typed protocols, each with the implementations that
fill it:

  Service      the batching service: `service.TtsService` in a single-process miner (and `asn serve`), a worker's
               `workers.RemoteService` (the hub's service behind a socket) with `asn mine --workers N`
  Policy       who may call: `policy.CallerPolicy` (reads the chain), a worker's `workers.HubPolicy` (a copy of the
               hub's snapshot; rate limits counted in the hub)
  NonceStore   btauth/1 replay protection: `nonces.SqliteNonceStore` (one file every process of a miner opens)
  Metrics      counters of the edge: `metrics.MinerMetrics`, a worker's `workers.RelayMetrics` (counted in the hub)
The seen log's protocol is `seen_log.SeenLog`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from audiosubnet.miner.policy import Decision, PolicyConfig
    from audiosubnet.protocol import ModelInfo, ServiceState
    from audiosubnet.service.batching import Rendered, ServiceConfig


class Service(Protocol):
    """What a front end asks of the batching service. Raises InputError/AudioDecodeError (the client's mistake),
    Overloaded, NotOffered, Unavailable (audiosubnet/errors.py), EngineError."""

    config: ServiceConfig

    async def start(self) -> None: ...

    async def drain(self, timeout: float = 30.0) -> bool: ...

    async def stop(self, timeout: float = 30.0) -> None: ...

    @property
    def started(self) -> bool: ...

    @property
    def state(self) -> ServiceState: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def default_model(self) -> str: ...

    @property
    def can_clone(self) -> bool: ...

    @property
    def can_music(self) -> bool: ...

    def models_info(self) -> list[ModelInfo]: ...

    async def synthesize(self, text: str, *, model: str | None = None, voice: str | None = None,
                         seed: int | None = None, fmt: str = "wav", sample_rate: int | None = None) -> Rendered: ...

    async def clone(self, text: str, reference: bytes, *, reference_text: str | None = None,
                    model: str | None = None, seed: int | None = None, fmt: str = "wav",
                    sample_rate: int | None = None) -> Rendered: ...

    async def music(self, prompt: str, *, duration_s: float, model: str | None = None, seed: int | None = None,
                    fmt: str = "wav", sample_rate: int | None = None) -> Rendered: ...


class Policy(Protocol):
    """Admission (`admit`, from a metagraph snapshot, never the chain) and per-caller rate limits (`take`)."""

    config: PolicyConfig

    @property
    def snapshot_age_s(self) -> float | None: ...

    def admit(self, hotkey: str) -> Decision: ...

    async def take(self, hotkey: str) -> Decision: ...

    async def run(self) -> None: ...


class NonceStore(Protocol):
    """btauth/1 replays: True the first time a (hotkey, nonce) is seen, False for a replay."""

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool: ...

    def close(self) -> None: ...


class Metrics(Protocol):
    """The counters the HTTP edge reports, and their Prometheus exposition."""

    def watch_metagraph(self, age: Callable[[], float | None]) -> None: ...

    def request(self, endpoint: str, status: int, seconds: float, model: str = "-", audio_s: float = 0.0,
                chars: int = 0) -> None: ...

    def auth_failure(self, reason: str) -> None: ...

    def rejection(self, reason: str) -> None: ...

    def disconnect(self, endpoint: str) -> None: ...

    async def exposition(self) -> bytes: ...

