"""`asn serve --workers N`: N HTTP worker processes in front of the process that runs the models (the hub).

The mechanism is the miner's (service/hub.py). What lives where:
- the hub (main process): the batching service and its model cache (models load on first use and unload after
  `--keep-alive` idle there), the per-caller rate limits (one token bucket per key across all workers), the
  Prometheus registry (/metrics on any worker shows the totals of every worker);
- each worker: HTTP, API-key checks, parsing, sentence splitting, saved-voice lookups (voices are folders under
  ASN_HOME that every worker reads from disk on each request: one created through a worker is usable through
  any other at once, and a deleted one is gone for all), and the encoding (mp3, opus, aac, flac through PyAV;
  wav, pcm) and streaming of the audio the hub sends back raw.

The serve ops on top of the hub's: rate (a caller's wait) | metrics (the registry, rendered); observed events:
request | served | first_audio | auth_failure | rate_limit.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosubnet import logs
from audiosubnet.serve.app import ServeContext, create_app, serving
from audiosubnet.serve.security import RateLimiter
from audiosubnet.serve.voices import VoiceStore
from audiosubnet.service.hub import Hub, HubLink, RemoteService, hub_path, run_hub, run_worker

log = logging.getLogger(__name__)

_OBSERVED = frozenset({"request", "served", "first_audio", "auth_failure", "rate_limit"})
# ServeContext fields a worker copies as they are
_COPIED = ("clone_model", "api_keys", "rate_limit_per_min", "max_input_chars", "max_body_bytes", "max_voice_bytes",
           "voice_map", "request_timeout_s", "drain_timeout_s")


def serve_hub(ctx: ServeContext, path: Path) -> Hub:
    """The hub of the main process's context `ctx` (real service, metrics and rate limits)."""
    limiter = RateLimiter(ctx.rate_limit_per_min)
    metrics = ctx.metrics

    def render(_: Any) -> bytes:
        metrics.loaded(len(ctx.service.loaded_models()))
        page: bytes = metrics.render()  # type: ignore[attr-defined]  # the hub's own context: a ServeMetrics
        return page

    def observe(events: list[tuple[Any, ...]]) -> None:
        for name, *args in events:
            if name in _OBSERVED:
                getattr(metrics, name)(*args)

    return Hub(ctx.service, path, ops={"rate": limiter.take, "metrics": render}, observe=observe,
               report_loaded=True)


class HubLimiter:
    """The rate limit of the hub: one bucket per caller for every worker (no call at all when it is off)."""

    def __init__(self, link: HubLink, per_min: float):
        self.link = link
        self.enabled = per_min > 0

    async def wait(self, caller: str) -> float:
        return float(await self.link.call("rate", caller)) if self.enabled else 0.0


class RelayServeMetrics:
    """The ServeMetrics calls of the HTTP edge, counted in the hub's registry."""

    def __init__(self, link: HubLink):
        self.link = link

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.link.observe("request", endpoint, status, seconds)

    def served(self, model: str, audio_s: float, chars: int) -> None:
        self.link.observe("served", model, audio_s, chars)

    def first_audio(self, seconds: float) -> None:
        self.link.observe("first_audio", seconds)

    def auth_failure(self) -> None:
        self.link.observe("auth_failure")

    def rate_limit(self) -> None:
        self.link.observe("rate_limit")

    def loaded(self, n: int) -> None:
        pass  # the hub counts its own loaded models

    async def exposition(self) -> bytes:
        self.link.flush()
        page: bytes = await self.link.call("metrics")  # the hub's registry, rendered
        return page


@dataclass(frozen=True)
class ServeWorkerSpec:
    """Everything a worker needs; picklable (it crosses a spawn)."""

    hub_path: str
    context: dict[str, Any]  # the _COPIED fields of the main process's ServeContext
    voices_root: str | None = None  # saved voices (None: not enabled)
    max_saved_voices: int = 1000
    uvicorn: dict[str, Any] = field(default_factory=dict)
    log_level: int = logging.INFO

    @classmethod
    def of(cls, ctx: ServeContext, hub_path: str | Path, uvicorn: dict[str, Any] | None = None) -> ServeWorkerSpec:
        voices = ctx.voices
        return cls(hub_path=str(hub_path), context={k: getattr(ctx, k) for k in _COPIED},
                   voices_root=str(voices.root) if voices is not None else None,
                   max_saved_voices=voices.max_voices if voices is not None else 0, uvicorn=dict(uvicorn or {}),
                   log_level=logging.getLogger("audiosubnet").getEffectiveLevel())


def worker_context(spec: ServeWorkerSpec, link: HubLink) -> ServeContext:
    """A worker's ServeContext: the real HTTP edge, with the service, rate limits and metrics in the hub."""
    voices = VoiceStore(Path(spec.voices_root), spec.max_saved_voices) if spec.voices_root else None
    return ServeContext(service=RemoteService(link), voices=voices,  # type: ignore[arg-type]
                        metrics=RelayServeMetrics(link),
                        limiter=HubLimiter(link, spec.context.get("rate_limit_per_min", 0.0)), **spec.context)


def worker_main(spec: ServeWorkerSpec, sock: socket.socket) -> None:
    """Entry point of a worker process: the serve app with the hub behind it, on the shared socket."""
    import uvicorn

    logs.install(spec.log_level, rich_tracebacks=logs.debug_enabled())  # as the main process has them
    run_worker(sock, spec.hub_path,
               lambda link: uvicorn.Config(create_app(worker_context(spec, link)), **spec.uvicorn))


def serve_with_workers(ctx: ServeContext, sock: socket.socket, workers: int, uvicorn: dict[str, Any]) -> int:
    """Blocking (main process): hub + `workers` worker processes on `sock` until SIGTERM/SIGINT. Exit status."""
    hub = serve_hub(ctx, hub_path("asn-serve-"))
    spec = ServeWorkerSpec.of(ctx, hub.path, uvicorn)
    return run_hub(hub, worker_main, spec, sock, workers, serving(ctx), ctx.drain_timeout_s, "asn-serve-worker")
