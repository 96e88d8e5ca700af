"""N HTTP worker processes in front of one hub process that owns the batching service (`--workers N`).

One Python process tops out at a few hundred requests/s on a GPU box: HTTP parsing, auth, JSON, encoding and
streaming share one GIL with the thread that launches the engine's kernels. With workers, the main process (the
hub) keeps what must exist once: the models and their queues (one dynamic batch for all workers), the front
end's shared state (rate limits, metrics, ...). N worker processes share the listening socket, do the
per-request work and hand each synthesis to the hub. Used by `asn mine --workers N` (miner/workers.py) and
`asn serve --workers N` (serve/workers.py); each adds its own ops and its own worker entry point.

Hub <-> worker: one Unix socket in a private (0700) folder, length-prefixed pickle frames (the transport of the
engine process, engines/isolated.py), many requests in flight on one connection.
  worker -> hub   (id, op, payload)   op: hello | models | tts | clone | music | the front end's ops
                  (0, "observe", [event, ...])  no reply (the front end's `observe` hook)
  hub -> worker   (id, ok, payload)   ok False: payload is (kind, message, retry_after), re-raised as the
                                      service's own exception; id 0: a state push (HubState)
The supervisor (`run_hub`) restarts a worker that dies; workers exit when the hub goes away; SIGTERM/SIGINT
drain the workers' in-flight requests first, then the hub's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from audiosubnet import errors, protocol
from audiosubnet.engines.isolated import frame, recv_exactly
from audiosubnet.errors import Unavailable
from audiosubnet.service.batching import (
    ModelView,
    Rendered,
    ServiceConfig,
    loaded_default,
    pick_model,
)

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
_MAX_FRAME = 256 * 2**20
STATE_PUSH_S = 0.5  # how often the hub tells the workers its state (for /health)
_RESTARTS = (5, 60.0)  # more than 5 worker restarts within 60 s: give up


# ---- frames -------------------------------------------------------------------------------------------
_frame = frame


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (n,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if n > _MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes")
    return pickle.loads(await reader.readexactly(n))


async def send(writer: asyncio.StreamWriter, lock: asyncio.Lock, obj: Any) -> None:
    try:
        async with lock:
            writer.write(_frame(obj))
            await writer.drain()
    except (ConnectionError, RuntimeError):  # the other side went away
        pass


def error_payload(e: BaseException) -> errors.Wire:
    """An error for the other side: one of audiosubnet/errors.py's, rebuilt there by class name (`from_wire`)."""
    wire = errors.to_wire(e)
    if wire is None:
        log.exception("hub: %s", type(e).__name__, exc_info=e)
        return "EngineError", f"internal error ({type(e).__name__})", None, 0.0
    return wire


class HubState(NamedTuple):
    """What the hub pushes to every worker each STATE_PUSH_S."""

    state: protocol.ServiceState = "starting"
    queue_depth: int = 0
    in_flight: int = 0
    revision: int = 0  # the service's model table changed (a lazy model loaded): workers ask for it again
    loaded: tuple[str, ...] = ()  # served models in memory now (with `report_loaded`)


# ---- the hub (main process) ---------------------------------------------------------------------------
Op = Callable[[Any], Any]  # payload -> result (or an awaitable of it)


class Hub:
    """Answers the worker processes of one front end: the service's requests plus the front end's `ops`;
    `observe` takes the events the workers send without waiting for a reply (metrics)."""

    def __init__(self, service: Any, path: Path, ops: Mapping[str, Op] | None = None,
                 observe: Callable[[list[tuple[Any, ...]]], None] | None = None, report_loaded: bool = False):
        self.service = service
        self.path = Path(path)
        self.ops = dict(ops or {})
        self.observe = observe
        self.report_loaded = report_loaded
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[asyncio.StreamWriter, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pusher: asyncio.Task[None] | None = None

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

    def state(self) -> HubState:
        svc = self.service
        loaded = tuple(svc.loaded_models()) if self.report_loaded and svc.started else ()
        return HubState(svc.state, svc.queue_depth, svc.in_flight, getattr(svc, "revision", 0), loaded)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = self._conns[writer] = asyncio.Lock()
        try:
            while True:
                rid, op, payload = await read_frame(reader)
                if op == "observe":
                    if self.observe is not None:
                        self.observe(payload)
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
            reply = (rid, False, error_payload(e))
        await send(writer, lock, reply)

    async def _do(self, op: str, payload: Any) -> Any:
        svc = self.service
        if op == "tts":
            return await svc.synthesize(**payload)
        if op == "clone":
            return await svc.clone(**payload)
        if op == "music":
            return await svc.music(**payload)
        if op == "models":
            return {"models": svc.models_info(), "views": svc.model_views()}
        if op == "hello":
            return {"config": svc.config, "models": svc.models_info(), "default": svc.default_model,
                    "clone": svc.can_clone, "state": self.state(), "views": svc.model_views()}
        fn = self.ops.get(op)
        if fn is None:
            raise ValueError(f"unknown op {op!r}")
        result = fn(payload)
        return await result if inspect.isawaitable(result) else result

    async def _push_state(self) -> None:
        while True:
            state = self.state()
            for w, lock in list(self._conns.items()):
                await send(w, lock, (0, True, state))
            await asyncio.sleep(STATE_PUSH_S)


# ---- the worker side ----------------------------------------------------------------------------------
class HubLink:
    """A worker's connection to the hub: many calls in flight, state pushes, loss detection."""

    def __init__(self, path: str | Path, on_lost: Callable[[], None] | None = None):
        self.path = str(path)
        self.on_lost = on_lost
        self.state = HubState()
        self.on_state: Callable[[HubState], None] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock: asyncio.Lock | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 1
        self._task: asyncio.Task[None] | None = None
        self._events: list[tuple[Any, ...]] = []
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
            raise Unavailable("the engine process is not reachable")
        rid, self._next = self._next, self._next + 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            assert self._writer is not None and self._lock is not None
            await send(self._writer, self._lock, (rid, op, payload))
            return await fut
        finally:
            self._pending.pop(rid, None)

    def observe(self, *event: Any) -> None:
        """Queue an event for the hub's `observe`; events of one loop iteration travel in one frame."""
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

    def _set_state(self, state: Any) -> None:
        self.state = HubState(*state)
        if self.on_state is not None:
            self.on_state(self.state)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                rid, ok, payload = await read_frame(self._reader)
                if rid == 0:
                    self._set_state(payload)
                    continue
                fut = self._pending.get(rid)
                if fut is None or fut.done():
                    continue
                if ok:
                    fut.set_result(payload)
                else:
                    fut.set_exception(errors.from_wire(payload))
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError):
            pass
        self.lost = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("the engine process went away"))
        if self.on_lost is not None:
            self.on_lost()


class RemoteService:
    """The TtsService interface the HTTP edge uses, answered by the hub's service."""

    def __init__(self, link: HubLink):
        self.link = link
        self.config = ServiceConfig()
        self._models: list[protocol.ModelInfo] = []
        self._views: list[ModelView] = []
        self._revision = 0
        self._refresh: asyncio.Future[None] | None = None
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
        self._clone, self._views = hello["clone"], hello["views"]
        self.link._set_state(hello["state"])
        self._revision = self.link.state.revision
        self.link.on_state = self._on_state

    def _on_state(self, state: HubState) -> None:
        if state.revision != self._revision and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(self._fetch_views(state.revision))

    async def _fetch_views(self, revision: int) -> None:
        with contextlib.suppress(Unavailable):
            table = await self.link.call("models")
            self._models, self._views, self._revision = table["models"], table["views"], revision

    async def drain(self, timeout: float = 30.0) -> bool:
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self, timeout: float = 30.0) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        await self.link.close()

    @property
    def started(self) -> bool:
        return self._default is not None

    @property
    def state(self) -> protocol.ServiceState:
        return "draining" if self._draining or self.link.lost else self.link.state.state

    @property
    def queue_depth(self) -> int:
        return self.link.state.queue_depth

    @property
    def in_flight(self) -> int:
        return self.link.state.in_flight

    @property
    def default_model(self) -> str:
        return loaded_default(self._default)

    @property
    def can_clone(self) -> bool:
        return self._clone

    @property
    def can_music(self) -> bool:
        return any(m.music for m in self._models)

    def models_info(self) -> list[protocol.ModelInfo]:
        return list(self._models)

    def resolve_model(self, requested: str | None, *, clone: bool = False) -> ModelView:
        return pick_model(self._views, self.default_model, requested, clone=clone)

    def loaded_models(self) -> list[str]:
        return list(self.link.state.loaded)

    async def synthesize(self, text: str, **kw: Any) -> Rendered:
        return await self._forward("tts", {"text": text, **kw})

    async def clone(self, text: str, reference: Any, **kw: Any) -> Rendered:
        return await self._forward("clone", {"text": text, "reference": reference, **kw})

    async def music(self, prompt: str, **kw: Any) -> Rendered:
        return await self._forward("music", {"prompt": prompt, **kw})

    async def _forward(self, op: str, payload: dict[str, Any]) -> Rendered:
        if self._draining:
            raise Unavailable("the server is draining for shutdown")
        self._local += 1
        self._idle.clear()
        try:
            rendered: Rendered = await self.link.call(op, payload)  # unpickled from the hub: typed here
            return rendered
        finally:
            self._local -= 1
            if self._local == 0:
                self._idle.set()


def run_worker(sock: socket.socket, path: str, config_for: Callable[[HubLink], Any]) -> None:
    """The body of an HTTP worker process (after its logging is set up): heap hygiene, a link to the hub at
    `path` (the worker exits when the hub goes away), then uvicorn on the shared socket with the config
    `config_for(link)` builds. Never returns: exit status 3 when the hub was lost, else 0."""
    import uvicorn

    from audiosubnet import heap

    heap.tune_long_running()
    server: uvicorn.Server | None = None

    def lost() -> None:
        if server is not None and not server.should_exit:
            log.error("HTTP worker %d: the engine process went away; exiting", os.getpid())
            server.should_exit = True

    link = HubLink(path, on_lost=lost)
    server = uvicorn.Server(config_for(link))
    server.run(sockets=[sock])
    os._exit(3 if link.lost else 0)  # skip interpreter teardown: nothing is left to flush


def blocking_call(path: str, op: str, payload: Any = None, timeout: float = 30.0) -> Any:
    """One call to the hub from a worker before its event loop runs (start-up)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(_frame((1, op, payload)))
        while True:
            head = recv_exactly(s, _HEADER.size)
            rid, ok, data = pickle.loads(recv_exactly(s, _HEADER.unpack(head)[0]))
            if rid == 1:
                if not ok:
                    raise Unavailable(data[1])
                return data


# ---- processes ----------------------------------------------------------------------------------------
def hub_path(prefix: str = "asn-miner-") -> Path:
    """A fresh private folder (0700) for the hub's socket; short enough for a Unix socket path."""
    return Path(tempfile.mkdtemp(prefix=prefix)) / "hub.sock"


def run_hub(hub: Hub, target: Callable[[Any, socket.socket], None], spec: Any, sock: socket.socket, workers: int,
            serving: contextlib.AbstractAsyncContextManager[Any], drain_timeout_s: float, name: str) -> int:
    """Blocking (main process): the hub inside `serving` (the service started; on the way out drained and
    stopped, after the workers) and `workers` processes `target(spec, sock)`, until SIGTERM/SIGINT. Exit status:
    0, or 1 when the workers kept dying."""
    coro = _supervise(hub, target, spec, sock, workers, serving, drain_timeout_s, name)
    try:
        import uvloop  # as uvicorn does in the workers: less CPU per frame in the hub
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _supervise(hub: Hub, target: Callable[[Any, socket.socket], None], spec: Any, sock: socket.socket,
                     workers: int, serving: contextlib.AbstractAsyncContextManager[Any], drain_timeout_s: float,
                     name: str) -> int:
    mp = multiprocessing.get_context("spawn")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def spawn(i: int) -> Any:
        p = mp.Process(target=target, args=(spec, sock), name=f"{name}-{i}")
        p.start()
        return p

    status = 0
    async with serving:
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
            deadline = time.monotonic() + drain_timeout_s + 5.0
            for p in procs:
                await asyncio.to_thread(p.join, max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
            await hub.close()
            shutil.rmtree(hub.path.parent, ignore_errors=True)
    return status
