"""`asn mine --workers N`: N HTTP worker processes in front of one engine process.

One Python process tops out at ~150 requests/s on a GPU box: HTTP parsing, btauth/1 signature checks, JSON and
policy share one GIL with the engine thread that launches the GPU kernels. With `--workers N` the main process
(the hub) keeps everything that must exist once: the model and its queue (one dynamic batch for all workers),
the metagraph, the per-caller rate limits and the metrics. N worker processes share the listening socket and do
the per-request work: read the body, verify btauth/1 (replays: the SQLite nonce store every process opens), check
the caller against a metagraph snapshot copied from the hub, parse and validate, then hand the request to the hub
and send its audio back. Statuses, headers and log lines are those of a single-process miner.

Hub <-> worker: one Unix socket in a private (0700) folder, length-prefixed pickle frames, many requests in
flight on one connection.
  worker -> hub   (id, op, payload)   op: hello | peers | rate | tts | clone | metrics | seen | observe (no reply)
  hub -> worker   (id, ok, payload)   ok False: payload is (kind, message, retry_after), re-raised as the
                                      service's own exception; id 0: a state push (state, queue, in flight)
The supervisor restarts a worker that dies; workers exit when the hub goes away; SIGTERM/SIGINT drain the
workers' in-flight requests first, then the hub's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosubnet import protocol
from audiosubnet.engines.isolated import frame, recv_exactly
from audiosubnet.errors import AudioDecodeError, EngineError, InputError
from audiosubnet.miner.policy import CallerPolicy, Decision, PolicyConfig
from audiosubnet.miner.seen_log import NoSeenLog
from audiosubnet.miner.service import NotOffered, Overloaded, Rendered, ServiceConfig, Unavailable, loaded_default

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
_MAX_FRAME = 256 * 2**20
STATE_PUSH_S = 0.5  # how often the hub tells the workers its state (for /health)
PEERS_REFRESH_S = 5.0  # how often a worker copies the hub's metagraph snapshot
_RESTARTS = (5, 60.0)  # more than 5 worker restarts within 60 s: give up


# ---- frames -------------------------------------------------------------------------------------------
_frame = frame  # the frames of the engine process (engines/isolated.py): one transport for both


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (n,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if n > _MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes")
    return pickle.loads(await reader.readexactly(n))


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


# errors that cross the socket, by kind; the first class that matches names it (subclasses before bases)
_ERRORS: tuple[tuple[str, type[Exception]], ...] = (
    ("rate_limited", RateLimited), ("overloaded", Overloaded), ("decode", AudioDecodeError), ("input", InputError),
    ("not_offered", NotOffered), ("unavailable", Unavailable), ("engine", EngineError))
_WITH_RETRY = (RateLimited, Overloaded)


def _error_payload(e: BaseException) -> tuple[str, str, float]:
    for kind, cls in _ERRORS:
        if isinstance(e, cls):
            return kind, str(e), float(getattr(e, "retry_after", 0.0))
    log.exception("hub: %s", type(e).__name__, exc_info=e)
    return "engine", f"internal error ({type(e).__name__})", 0.0


def _error(kind: str, message: str, retry_after: float) -> Exception:
    cls = dict(_ERRORS).get(kind, EngineError)
    return cls(message, retry_after) if issubclass(cls, _WITH_RETRY) else cls(message)  # type: ignore[call-arg]


# ---- the hub (main process) ---------------------------------------------------------------------------
class Hub:
    """Serves the workers of one miner: `ctx` is the main process's MinerContext (real service and policy)."""

    def __init__(self, ctx: Any, path: Path):
        self.ctx = ctx
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[asyncio.StreamWriter, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pusher: asyncio.Task | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=2**20)
        os.chmod(self.path, 0o600)
        self._pusher = asyncio.create_task(self._push_state())

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
        if self._server is not None:
            self._server.close()
        for w in list(self._conns):
            w.close()
        for t in list(self._tasks):
            t.cancel()

    def state(self) -> tuple[str, int, int]:
        svc = self.ctx.service
        return svc.state, svc.queue_depth, svc.in_flight

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = self._conns[writer] = asyncio.Lock()
        try:
            while True:
                rid, op, payload = await _read_frame(reader)
                if op == "observe":
                    self._observe(payload)
                    continue
                task = asyncio.create_task(self._answer(writer, lock, rid, op, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError, ValueError, TypeError):
            pass
        finally:
            self._conns.pop(writer, None)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, lock: asyncio.Lock, rid: int, op: str,
                      payload: Any) -> None:
        try:
            reply = (rid, True, await self._do(op, payload))
        except Exception as e:
            reply = (rid, False, _error_payload(e))
        await _send(writer, lock, reply)

    async def _do(self, op: str, payload: Any) -> Any:
        ctx, svc = self.ctx, self.ctx.service
        if op == "tts":
            return await svc.synthesize(**payload)
        if op == "clone":
            return await svc.clone(**payload)
        if op == "music":
            return await svc.music(**payload)
        if op == "rate":
            d = ctx.policy.rate(payload)
            if not d.allowed:  # the worker counts the rejection (as a single-process miner does)
                raise RateLimited(d.message, d.retry_after)
            return None
        if op == "peers":
            return ctx.policy.snapshot()
        if op == "metrics":
            return ctx.metrics.render()
        if op == "seen":
            request, asker = payload
            return await ctx.seen_log.seen(request, asker)
        if op == "hello":
            return {"config": svc.config, "models": svc.models_info(), "default": svc.default_model,
                    "clone": svc.can_clone, "state": self.state()}
        raise ValueError(f"unknown op {op!r}")

    _OBSERVED = frozenset({"request", "auth_failure", "rejection", "disconnect"})

    def _observe(self, events: list) -> None:
        for name, *args in events:
            if name in self._OBSERVED:
                getattr(self.ctx.metrics, name)(*args)
            elif name == "seen":  # a worker's answer, sketched and fingerprinted there
                self.ctx.seen_log.add(*args)

    async def _push_state(self) -> None:
        while True:
            state = self.state()
            for w, lock in list(self._conns.items()):
                await _send(w, lock, (0, True, state))
            await asyncio.sleep(STATE_PUSH_S)


async def _send(writer: asyncio.StreamWriter, lock: asyncio.Lock, obj: Any) -> None:
    try:
        async with lock:
            writer.write(_frame(obj))
            await writer.drain()
    except (ConnectionError, RuntimeError):  # the other side went away
        pass


# ---- the worker side ----------------------------------------------------------------------------------
class HubLink:
    """A worker's connection to the hub: many calls in flight, state pushes, loss detection."""

    def __init__(self, path: str | Path, on_lost: Callable[[], None] | None = None):
        self.path = str(path)
        self.on_lost = on_lost
        self.state: tuple[str, int, int] = ("starting", 0, 0)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock: asyncio.Lock | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next = 1
        self._task: asyncio.Task | None = None
        self._events: list[tuple] = []
        self._flush_scheduled = False
        self.lost = False

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self.lost

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self.path, limit=2**20)
        self._lock = asyncio.Lock()
        self._task = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        if self._writer is not None:
            self.flush()
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def call(self, op: str, payload: Any = None) -> Any:
        if not self.connected:
            raise Unavailable("the miner's engine process is not reachable")
        rid, self._next = self._next, self._next + 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            assert self._writer is not None and self._lock is not None
            await _send(self._writer, self._lock, (rid, op, payload))
            return await fut
        finally:
            self._pending.pop(rid, None)

    def observe(self, *event: Any) -> None:
        """Queue a metrics event; events of one loop iteration travel in one frame."""
        self._events.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        events, self._events = self._events, []
        if events and self.connected:
            assert self._writer is not None
            self._writer.write(_frame((0, "observe", events)))  # one write() per frame: never interleaved

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                rid, ok, payload = await _read_frame(self._reader)
                if rid == 0:
                    self.state = tuple(payload)  # type: ignore[assignment]
                    continue
                fut = self._pending.get(rid)
                if fut is None or fut.done():
                    continue
                if ok:
                    fut.set_result(payload)
                else:
                    fut.set_exception(_error(*payload))
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError):
            pass
        self.lost = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("the miner's engine process went away"))
        if self.on_lost is not None:
            self.on_lost()


class RemoteService:
    """The TtsService interface the HTTP edge uses, answered by the hub's service."""

    def __init__(self, link: HubLink):
        self.link = link
        self.config = ServiceConfig()
        self._models: list[protocol.ModelInfo] = []
        self._default: str | None = None
        self._clone = False
        self._local = 0  # requests of this worker inside the hub
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    async def start(self) -> None:
        if not self.link.connected:
            await self.link.connect()
        hello = await self.link.call("hello")
        self.config, self._models, self._default = hello["config"], hello["models"], hello["default"]
        self._clone, self.link.state = hello["clone"], hello["state"]

    async def drain(self, timeout: float = 30.0) -> bool:
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self, timeout: float = 30.0) -> None:
        await self.link.close()

    @property
    def started(self) -> bool:
        return self._default is not None

    @property
    def state(self) -> str:
        return "draining" if self._draining or self.link.lost else self.link.state[0]

    @property
    def queue_depth(self) -> int:
        return self.link.state[1]

    @property
    def in_flight(self) -> int:
        return self.link.state[2]

    @property
    def default_model(self) -> str:
        return loaded_default(self._default)

    @property
    def can_clone(self) -> bool:
        return self._clone

    def models_info(self) -> list[protocol.ModelInfo]:
        return list(self._models)

    async def synthesize(self, text: str, **kw: Any) -> Rendered:
        return await self._forward("tts", {"text": text, **kw})

    async def clone(self, text: str, reference: bytes, **kw: Any) -> Rendered:
        return await self._forward("clone", {"text": text, "reference": reference, **kw})

    async def music(self, prompt: str, **kw: Any) -> Rendered:
        return await self._forward("music", {"prompt": prompt, **kw})

    @property
    def can_music(self) -> bool:
        return any(m.music for m in self._models)

    async def _forward(self, op: str, payload: dict) -> Rendered:
        if self._draining:
            raise Unavailable("the miner is draining for shutdown")
        self._local += 1
        self._idle.clear()
        try:
            return await self.link.call(op, payload)
        finally:
            self._local -= 1
            if self._local == 0:
                self._idle.set()


class HubPolicy(CallerPolicy):
    """Admission from a copy of the hub's metagraph snapshot; rate limits counted once, in the hub."""

    def __init__(self, link: HubLink, config: PolicyConfig, snapshot: tuple[list, float | None]):
        super().__init__(chain=None, config=config)  # type: ignore[arg-type]
        self.link = link
        peers, age = snapshot
        self.update(peers, age_s=age)

    def refresh(self) -> int:  # pragma: no cover - the hub refreshes from the chain, not the workers
        raise NotImplementedError

    async def run(self) -> None:
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
        return await self.link.call("metrics")


class RemoteSeenLog:
    """The seen log of the hub: a worker sketches and fingerprints its own answers, the hub keeps them."""

    def __init__(self, link: HubLink):
        self.link = link
        self._pending: set[asyncio.Future] = set()

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
        return await self.link.call("seen", (request, asker))


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
        limits = {k: getattr(ctx, k) for k in ("max_body_bytes", "max_clone_body_bytes", "auth_max_age_s",
                                               "auth_skew_s", "drain_timeout_s", "body_timeout_s",
                                               "body_budget_bytes")}
        return cls(hub_path=str(hub_path), hotkey=ctx.hotkey, netuid=ctx.netuid, policy=ctx.policy.config,
                   nonce_path=str(ctx.nonce_store.path), nonce_retention=ctx.nonce_store.retention, limits=limits,
                   uvicorn=dict(uvicorn or {}), log_level=logging.getLogger("audiosubnet").getEffectiveLevel(),
                   seen_log=not isinstance(ctx.seen_log, NoSeenLog))


def worker_context(spec: WorkerSpec, link: HubLink, peers: list) -> Any:
    """A worker's MinerContext: the real HTTP edge, with service, rate limits and metrics in the hub."""
    from audiosubnet.miner.app import MinerContext
    from audiosubnet.miner.nonces import SqliteNonceStore

    return MinerContext(hotkey=spec.hotkey, netuid=spec.netuid, service=RemoteService(link),  # type: ignore[arg-type]
                        policy=HubPolicy(link, spec.policy, peers),
                        nonce_store=SqliteNonceStore(spec.nonce_path, retention=spec.nonce_retention),
                        metrics=RelayMetrics(link), seen_log=RemoteSeenLog(link) if spec.seen_log else NoSeenLog(),
                        role=f"HTTP worker {os.getpid()}",
                        **spec.limits)  # type: ignore[arg-type]


def _blocking_call(path: str, op: str, payload: Any = None, timeout: float = 30.0) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(_frame((1, op, payload)))
        while True:
            head = _recv_exactly(s, _HEADER.size)
            rid, ok, data = pickle.loads(_recv_exactly(s, _HEADER.unpack(head)[0]))
            if rid == 1:
                if not ok:
                    raise Unavailable(data[1])
                return data


_recv_exactly = recv_exactly


def worker_main(spec: WorkerSpec, sock: socket.socket) -> None:
    """Entry point of a worker process: the miner app with the hub behind it, on the shared socket."""
    import uvicorn

    from audiosubnet.logs import setup_logging
    from audiosubnet.miner.app import create_app
    from audiosubnet.miner.deadlines import uvicorn_config

    setup_logging()
    logging.getLogger("audiosubnet").setLevel(spec.log_level)
    server: uvicorn.Server | None = None

    def lost() -> None:
        if server is not None and not server.should_exit:
            log.error("HTTP worker %d: the engine process went away; exiting", os.getpid())
            server.should_exit = True

    link = HubLink(spec.hub_path, on_lost=lost)
    ctx = worker_context(spec, link, _blocking_call(spec.hub_path, "peers"))
    server = uvicorn.Server(uvicorn_config(create_app(ctx), spec.uvicorn))
    server.run(sockets=[sock])
    os._exit(3 if link.lost else 0)  # skip interpreter teardown: nothing is left to flush


def serve_with_workers(ctx: Any, sock: socket.socket, workers: int, uvicorn: dict[str, Any]) -> int:
    """Blocking (main process): hub + `workers` worker processes on `sock` until SIGTERM/SIGINT. Exit status."""
    try:
        import uvloop  # as uvicorn does in the workers: less CPU per frame in the hub
    except ImportError:
        return asyncio.run(_supervise(ctx, sock, workers, uvicorn))
    return uvloop.run(_supervise(ctx, sock, workers, uvicorn))


def hub_path() -> Path:
    """A fresh private folder (0700) for the hub's socket; short enough for a Unix socket path."""
    return Path(tempfile.mkdtemp(prefix="asn-miner-")) / "hub.sock"


async def _supervise(ctx: Any, sock: socket.socket, workers: int, uvicorn: dict[str, Any]) -> int:
    from audiosubnet.miner.app import serving

    hub = Hub(ctx, hub_path())
    spec = WorkerSpec.of(ctx, hub.path, uvicorn)
    mp = multiprocessing.get_context("spawn")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def spawn(i: int) -> Any:
        p = mp.Process(target=worker_main, args=(spec, sock), name=f"asn-miner-worker-{i}")
        p.start()
        return p

    status = 0
    async with serving(ctx):  # on the way out, after the workers: drain the queue, stop
        await hub.start()
        procs = [spawn(i) for i in range(workers)]
        log.info("%d HTTP workers (pids %s) in front of the engine process %d", workers,
                 " ".join(str(p.pid) for p in procs), os.getpid())
        restarts: list[float] = []
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                for i, p in enumerate(procs):
                    if p.is_alive() or stop.is_set():
                        continue
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < _RESTARTS[1]] + [now]
                    if len(restarts) > _RESTARTS[0]:
                        log.error("HTTP workers keep dying (%d restarts within %.0f s; the last exit status was "
                                  "%s); stopping", len(restarts), _RESTARTS[1], p.exitcode)
                        status = 1
                        stop.set()
                        break
                    log.warning("HTTP worker %d (pid %s) exited with status %s; starting another", i, p.pid,
                                p.exitcode)
                    procs[i] = spawn(i)
        finally:
            log.info("stopping: draining %d HTTP workers, then the engine queue", sum(p.is_alive() for p in procs))
            for p in procs:
                if p.is_alive():
                    p.terminate()  # SIGTERM: uvicorn stops accepting and finishes what it has
            deadline = time.monotonic() + ctx.drain_timeout_s + 5.0
            for p in procs:
                await asyncio.to_thread(p.join, max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
            await hub.close()
            shutil.rmtree(hub.path.parent, ignore_errors=True)
    return status
