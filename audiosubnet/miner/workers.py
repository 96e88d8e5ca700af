"""`asn mine --workers N`: N HTTP worker processes in front of one engine process (the hub).

The mechanism (hub, link, remote service, supervision) is service/hub.py, shared with `asn serve --workers N`;
this module adds what is the miner's own. The main process (the hub) keeps everything that must exist once: the
model and its queue (one dynamic batch for all workers), the metagraph, the per-caller rate limits, the metrics
and the seen log. N worker processes share the listening socket and do the per-request work: read the body,
verify btauth/1 (replays: the SQLite nonce store every process opens), check the caller against a metagraph
snapshot copied from the hub, parse and validate, then hand the request to the hub and send its audio back.
Statuses, headers and log lines are those of a single-process miner.

The miner's ops on top of the hub's: peers (metagraph snapshot) | rate | metrics | seen; observed events:
request | auth_failure | rejection | disconnect | seen (a worker's answer, sketched and fingerprinted there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiosubnet import protocol
from audiosubnet.errors import RateLimited, Unavailable
from audiosubnet.miner.policy import Admission, Decision, PolicyConfig
from audiosubnet.miner.seen_log import NoSeenLog
from audiosubnet.service import hub as _hub
from audiosubnet.service.hub import HubLink, RemoteService, blocking_call, hub_path, run_hub, run_worker

if TYPE_CHECKING:
    import numpy as np

    from audiosubnet.chain.base import Peer
    from audiosubnet.miner.app import MinerContext

__all__ = ["Hub", "HubLink", "HubPolicy", "RateLimited", "RelayMetrics", "RemoteSeenLog", "RemoteService",
           "WorkerSpec", "hub_path", "serve_with_workers", "worker_context", "worker_main"]

log = logging.getLogger(__name__)

PEERS_REFRESH_S = 5.0  # how often a worker copies the hub's metagraph snapshot
_frame = _hub._frame
_error_payload = _hub.error_payload


class Hub(_hub.Hub):
    """Serves the workers of one miner: `ctx` is the main process's MinerContext (real service and policy)."""

    _OBSERVED = frozenset({"request", "auth_failure", "rejection", "disconnect"})

    def __init__(self, ctx: Any, path: Path):
        # the main process's MinerContext, whose policy (CallerPolicy) and seen log (SeenLog) are the real ones:
        # the hub uses more of them (snapshot, rate, add) than the worker-facing seams declare
        self.ctx = ctx
        super().__init__(ctx.service, path, ops={"rate": self._rate, "peers": lambda _: ctx.policy.snapshot(),
                                                 "metrics": self._metrics, "seen": self._seen},
                         observe=self._observe)

    def _rate(self, hotkey: str) -> None:
        d = self.ctx.policy.rate(hotkey)
        if not d.allowed:  # the worker counts the rejection (as a single-process miner does)
            raise RateLimited(d.message, d.retry_after)

    async def _metrics(self, _: Any) -> bytes:
        text: bytes = await self.ctx.metrics.exposition()
        return text

    async def _seen(self, payload: tuple[protocol.SeenRequest, str]) -> list[protocol.SeenEntry]:
        request, asker = payload
        entries: list[protocol.SeenEntry] = await self.ctx.seen_log.seen(request, asker)
        return entries

    def _observe(self, events: list[tuple[Any, ...]]) -> None:
        for name, *args in events:
            if name in self._OBSERVED:
                getattr(self.ctx.metrics, name)(*args)
            elif name == "seen":  # a worker's answer, sketched and fingerprinted there
                self.ctx.seen_log.add(*args)


class HubPolicy(Admission):
    """Admission from a copy of the hub's metagraph snapshot (never the chain); rate limits counted once, in the
    hub."""

    def __init__(self, link: HubLink, config: PolicyConfig, snapshot: tuple[list[Peer], float | None]):
        super().__init__(config)
        self.link = link
        peers, age = snapshot
        self.update(peers, age_s=age)

    async def run(self) -> None:
        """Copy the hub's snapshot every few seconds (cancel to stop)."""
        while True:
            await asyncio.sleep(min(PEERS_REFRESH_S, self.config.refresh_s))
            with contextlib.suppress(Unavailable):
                peers, age = await self.link.call("peers")
                self.update(peers, age_s=age)

    async def take(self, hotkey: str) -> Decision:
        if self.config.rate_limit_per_min > 0:
            try:
                await self.link.call("rate", hotkey)
            except RateLimited as e:
                return Decision(False, "rate_limited", str(e), e.retry_after)
        return Decision(True, "ok")


class RelayMetrics:
    """The MinerMetrics calls of the HTTP edge, counted in the hub's registry."""

    def __init__(self, link: HubLink):
        self.link = link

    def watch_metagraph(self, age: Callable[[], float | None]) -> None:
        pass  # the hub reports the age of its own snapshot

    def request(self, endpoint: str, status: int, seconds: float, model: str = "-", audio_s: float = 0.0,
                chars: int = 0) -> None:
        self.link.observe("request", endpoint, status, seconds, model, audio_s, chars)

    def auth_failure(self, reason: str) -> None:
        self.link.observe("auth_failure", reason)

    def rejection(self, reason: str) -> None:
        self.link.observe("rejection", reason)

    def disconnect(self, endpoint: str) -> None:
        self.link.observe("disconnect", endpoint)

    async def exposition(self) -> bytes:
        self.link.flush()
        text: bytes = await self.link.call("metrics")
        return text


class RemoteSeenLog:
    """The seen log of the hub: a worker sketches and fingerprints its own answers, the hub keeps them."""

    def __init__(self, link: HubLink):
        self.link = link
        self._pending: set[asyncio.Future[tuple[np.ndarray, str | None]]] = set()

    async def record(self, caller: str, endpoint: str, text: str, audio: bytes) -> None:
        from audiosubnet.miner.seen_log import FP_BACKLOG, fingerprint_pool, make_entry_parts

        busy = len(self._pending) >= FP_BACKLOG  # see seen_log: past a flood's backlog, sketch only
        fut = asyncio.get_running_loop().run_in_executor(fingerprint_pool(), make_entry_parts, text,
                                                         None if busy else audio)
        self._pending.add(fut)
        try:
            sketch, fp = await fut
        finally:
            self._pending.discard(fut)
        if self.link.connected:
            self.link.observe("seen", caller, endpoint, sketch, fp)

    async def seen(self, request: protocol.SeenRequest, asker: str) -> list[protocol.SeenEntry]:
        """This worker's own answers are in the hub's log first (another worker's may still be on the way)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
            await asyncio.sleep(0)  # let the records' done callbacks queue their events
        self.link.flush()
        entries: list[protocol.SeenEntry] = await self.link.call("seen", (request, asker))
        return entries


# ---- processes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs; picklable (it crosses a spawn)."""

    hub_path: str
    hotkey: str
    netuid: int
    policy: PolicyConfig
    nonce_path: str
    nonce_retention: float
    limits: dict[str, float] = field(default_factory=dict)  # MinerContext fields: body caps, auth window, drain
    uvicorn: dict[str, Any] = field(default_factory=dict)
    log_level: int = logging.INFO
    seen_log: bool = True  # keep a seen log (in the hub) of the answers

    @classmethod
    def of(cls, ctx: Any, hub_path: str | Path, uvicorn: dict[str, Any] | None = None) -> WorkerSpec:
        """The spec of workers in front of the main process's MinerContext `ctx`."""
        limits = {k: getattr(ctx, k) for k in (*ctx.FROM_SECTION, "auth_skew_s")}
        return cls(hub_path=str(hub_path), hotkey=ctx.hotkey, netuid=ctx.netuid, policy=ctx.policy.config,
                   nonce_path=str(ctx.nonce_store.path), nonce_retention=ctx.nonce_store.retention, limits=limits,
                   uvicorn=dict(uvicorn or {}), log_level=logging.getLogger("audiosubnet").getEffectiveLevel(),
                   seen_log=not isinstance(ctx.seen_log, NoSeenLog))


def worker_context(spec: WorkerSpec, link: HubLink, peers: tuple[list[Peer], float | None]) -> MinerContext:
    """A worker's MinerContext: the real HTTP edge, with service, rate limits and metrics in the hub."""
    from audiosubnet.miner.app import MinerContext
    from audiosubnet.miner.nonces import SqliteNonceStore

    return MinerContext(hotkey=spec.hotkey, netuid=spec.netuid, service=RemoteService(link),
                        policy=HubPolicy(link, spec.policy, peers),
                        nonce_store=SqliteNonceStore(spec.nonce_path, retention=spec.nonce_retention),
                        metrics=RelayMetrics(link), seen_log=RemoteSeenLog(link) if spec.seen_log else NoSeenLog(),
                        role=f"HTTP worker {os.getpid()}",
                        **spec.limits)  # type: ignore[arg-type]


_blocking_call = blocking_call


def worker_main(spec: WorkerSpec, sock: socket.socket) -> None:
    """Entry point of a worker process: the miner app with the hub behind it, on the shared socket."""
    from audiosubnet import logs
    from audiosubnet.miner.app import create_app
    from audiosubnet.miner.deadlines import uvicorn_config

    logs.install(spec.log_level)
    peers = _blocking_call(spec.hub_path, "peers")
    run_worker(sock, spec.hub_path,
               lambda link: uvicorn_config(create_app(worker_context(spec, link, peers)), spec.uvicorn))


def serve_with_workers(ctx: Any, sock: socket.socket, workers: int, uvicorn: dict[str, Any]) -> int:
    """Blocking (main process): hub + `workers` worker processes on `sock` until SIGTERM/SIGINT. Exit status."""
    from audiosubnet.miner.app import serving

    hub = Hub(ctx, hub_path())
    return run_hub(hub, worker_main, WorkerSpec.of(ctx, hub.path, uvicorn), sock, workers, serving(ctx),
                   ctx.drain_timeout_s, "asn-miner-worker")
