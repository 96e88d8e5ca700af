"""Engines in a supervised child process: a native crash costs the requests of one call, not the process.

espeak-ng, onnxruntime and CUDA are native code; a bad input or a driver fault there ends the whole process
(SIGSEGV, abort), and with it every connection of a miner or every row of a batch job. `EngineProcess` runs the
engines in a child (spawned; its own ModelCache with the same device, dtype and budget) and talks to it over a
socket pair with the length-prefixed pickle frames of `asn mine --workers N` (miner/workers.py):

  parent -> child   (id, op, payload)   op: load | unload | check | scripts | synth | each | iter | warmup | cancel
                                        | exit
  child -> parent   (id, ok, payload)   ok False: payload is errors.to_wire's (class name, message, hint, _);
                                        ok "part": one (index, audio) of an `iter` call, more to come

Guarantees:
  - a call in flight when the child dies raises `EngineCrashed` (an EngineError) naming the signal;
  - the supervisor starts a new child at once and loads (and warms up) every model loaded before, so the next
    call is served without an operator; calls made meanwhile wait for it (up to `ready_timeout_s`);
  - a child that keeps dying while loading is restarted with a growing pause (1 s .. 30 s), never in a tight loop;
  - the child exits when the parent goes away (end of file on its socket).
`IsolatedCache` offers the part of ModelCache that the miner's service and the batch jobs use (`engine(model_id)`
leasing a `RemoteEngine` with `capabilities`, `check`, `scripts_for`, `synthesize`, `synthesize_iter` (each clip
as it is done, streamed across the socket; closing the iterator cancels the rest), `warmup`), so they run
unchanged on top.
How the jobs use it: a batch that crashes the engine is retried item by item (their usual isolation of a failing
item); the item that crashes the engine again is recorded as failed with the reason, the job goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from audiosubnet import errors, heap
from audiosubnet.batch_policy import as_item_error, run_each
from audiosubnet.engines.base import Capabilities, SynthesisRequest
from audiosubnet.errors import EngineError

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 31
READY_TIMEOUT_S = 600.0  # loading a large model on a cold disk
_BACKOFF = (1.0, 30.0)


class EngineCrashed(EngineError):
    """The engine process died while serving the call (a native crash, or it was killed)."""


# ---- frames (shared with miner/workers.py) ------------------------------------------------------------
def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=5)
    return HEADER.pack(len(data)) + data


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("the other side closed the connection")
        got += k
    return bytes(buf)


def recv_frame(s: socket.socket) -> Any:
    (n,) = HEADER.unpack(recv_exactly(s, HEADER.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes")
    return pickle.loads(recv_exactly(s, n))


def _error_payload(e: BaseException) -> errors.Wire:
    """Ours as it is; anything else an EngineError naming it (logged): rebuilt by class name in the parent."""
    wire = errors.to_wire(as_item_error(e))
    assert wire is not None
    return wire


rebuild_error = errors.from_wire  # the typed error of the child, as the parent raises it


# ---- the child ----------------------------------------------------------------------------------------
class _Child:
    def __init__(self, sock: socket.socket, device: str, dtype: str, budget: Any, threads: int):
        from audiosubnet.engines.registry import build_cache

        self.sock = sock
        self.cache = build_cache(device, dtype, budget)  # engines that lease others are given this one
        self.send_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="asn-engine")
        self.cancelled: set[int] = set()  # `iter` calls whose caller stopped listening

    def serve(self) -> None:
        while True:
            try:
                rid, op, payload = recv_frame(self.sock)
            except (ConnectionError, OSError, EOFError, pickle.UnpicklingError):
                break  # the parent went away
            if op == "exit":
                break
            if op == "cancel":
                self.cancelled.add(payload)
                continue
            self.pool.submit(self._answer, rid, op, payload)
        os._exit(0)  # engines' native threads must not keep a headless child alive

    def _send(self, reply: tuple[Any, ...]) -> None:
        try:
            data = frame(reply)
        except Exception as e:  # an unpicklable result: report it instead
            data = frame((reply[0], False, _error_payload(EngineError(f"cannot send the result: {e}"))))
        with self.send_lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def _answer(self, rid: int, op: str, payload: Any) -> None:
        try:
            if op == "iter":
                self._iter(rid, payload)
                reply: tuple[Any, ...] = (rid, True, None)
            else:
                reply = (rid, True, self._do(op, payload))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
            reply = (rid, False, _error_payload(e))
        self.cancelled.discard(rid)
        self._send(reply)

    def _iter(self, rid: int, payload: Any) -> None:
        """Each (index, audio) as the engine hands it over, as a "part" frame; stops when the caller cancels."""
        model_id, requests = payload
        with self.cache.engine(model_id) as engine:
            it = engine.synthesize_iter(requests)
            try:
                for item in it:
                    self._send((rid, "part", item))
                    if rid in self.cancelled:
                        break
            finally:
                it.close()
        return None

    def _do(self, op: str, payload: Any) -> Any:
        if op == "load":
            model_id, warm = payload
            with self.cache.engine(model_id) as engine:
                caps = engine.capabilities
                if warm:
                    engine.warmup()
                    if caps.batching and caps.max_batch > 1 and caps.tts:
                        engine.synthesize([SynthesisRequest("Warm up the batch.", voice=caps.default_voice)] * 2)
            self.cache.pin(self.cache.key(model_id, self.cache.device, self.cache.dtype))
            return caps
        model_id, arg = payload
        if op == "unload":  # before the lease below, which would load it
            return self.cache.unload(self.cache.key(model_id, self.cache.device, self.cache.dtype))
        with self.cache.engine(model_id) as engine:
            if op == "check":
                engine.check(arg)
                return None
            if op == "scripts":
                return engine.scripts_for(arg)
            if op == "synth":
                return engine.synthesize(arg)
            if op == "each":  # the one batch policy; a fatal error fails the whole call
                return [r if not isinstance(r, BaseException) else _Failed(_error_payload(r))
                        for r in run_each(engine, arg)]
            if op == "warmup":
                engine.warmup()
                return None
        raise ValueError(f"unknown op {op!r}")


class _Failed:
    """One item's error inside an `each` reply."""

    __slots__ = ("payload",)

    def __init__(self, payload: errors.Wire):
        self.payload = payload

    def __reduce__(self) -> tuple[type[_Failed], tuple[errors.Wire]]:
        return _Failed, (self.payload,)


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the engine process: fd device dtype budget threads log_level."""
    fd, device, dtype, budget, threads, level = argv
    logging.basicConfig(level=int(level), format="%(asctime)s %(levelname)-7s engine %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    sock = socket.socket(fileno=int(fd))
    heap.tune_long_running()
    _Child(sock, device, dtype, budget or None, int(threads)).serve()


# ---- the parent ---------------------------------------------------------------------------------------
def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:  # Popen.returncode: -N for signal N
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class EngineProcess:
    """A supervised engine child. Thread-safe; every call blocks its calling thread (run it off an event loop)."""

    def __init__(self, device: str = "cpu", dtype: str = "float32", budget: Any = None, *,
                 threads: int = 1, ready_timeout_s: float = READY_TIMEOUT_S, on_restart: Any = None,
                 env: dict[str, str] | None = None):
        self.device, self.dtype, self.budget, self.threads = device, dtype, budget, threads
        self.env = dict(env or {})  # set in the child's environment (e.g. CUDA_VISIBLE_DEVICES of an engine pool)
        self.ready_timeout_s = ready_timeout_s
        self.on_restart = on_restart  # called (no arguments) after each restart
        self.restarts = 0
        self.last_exit: str | None = None
        self._proc: Any = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._state = threading.Condition()
        self._ready = False
        self._closing = False
        self._pending: dict[int, tuple[Future[Any], Any]] = {}  # id -> (future, the child it was sent to)
        self._streams: dict[int, queue.SimpleQueue[tuple[int, Any]]] = {}  # `iter` call id -> its parts as they come
        self._next = 1
        self._loaded: dict[str, tuple[bool, Capabilities]] = {}
        self._supervisor: threading.Thread | None = None

    # lifecycle
    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def ready(self) -> bool:
        return self._ready

    def start(self) -> None:
        with self._state:
            if self._supervisor is not None:
                return
            self._spawn()
            self._supervisor = threading.Thread(target=self._supervise, name="asn-engine-supervisor", daemon=True)
            self._supervisor.start()

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        budget = "" if self.budget is None else str(self.budget)
        level = logging.getLogger("audiosubnet").getEffectiveLevel()
        # a plain `python -m audiosubnet.engines.isolated` (not a multiprocessing child): nothing of the parent's
        # state is copied, and the process is easy to tell apart (ps, /proc/<pid>/cmdline)
        proc = subprocess.Popen([sys.executable, "-m", "audiosubnet.engines.isolated", str(child.fileno()),
                                 self.device, self.dtype, budget, str(self.threads), str(level)],
                                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                                env={**os.environ, **self.env} if self.env else None)
        child.close()
        self._proc, self._sock = proc, parent
        threading.Thread(target=self._read_loop, args=(parent, proc), name="asn-engine-reader", daemon=True).start()
        log.info("engine process pid %d started", proc.pid)

    def close(self, timeout: float = 5.0) -> None:
        with self._state:
            self._closing = True
            self._ready = False
            self._state.notify_all()
        proc, sock = self._proc, self._sock
        if sock is not None:
            with contextlib.suppress(OSError), self._send_lock:
                sock.sendall(frame((0, "exit", None)))
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1.0)
        if sock is not None:
            sock.close()

    # the supervisor: (re)load models after every start
    def _supervise(self) -> None:
        pause = _BACKOFF[0]
        first = True
        while not self._closing:
            proc = self._proc
            ok = self._replay_loads()
            if ok:
                with self._state:
                    self._ready = True
                    self._state.notify_all()
                if not first:
                    log.warning("engine process restarted (pid %d) and serving again", proc.pid)
                    if self.on_restart is not None:
                        with contextlib.suppress(Exception):
                            self.on_restart()
                pause = _BACKOFF[0]
            proc.wait()  # until it dies
            with self._state:
                self._ready = False
            if self._closing:
                return
            self.last_exit = _describe_exit(proc.returncode)
            log.error("engine process pid %d died (%s); starting another", proc.pid, self.last_exit)
            if not ok:
                time.sleep(pause)
                pause = min(_BACKOFF[1], pause * 2)
            with self._state:
                if self._closing:
                    return
                self.restarts += 1
                self._spawn()
            first = False

    def _replay_loads(self) -> bool:
        for model_id, (warm, _) in list(self._loaded.items()):
            try:
                self._raw_call("load", (model_id, warm), self.ready_timeout_s)
            except EngineCrashed:
                return False
            except Exception as e:  # it loaded before: a failure now is the machine's, not the model id's
                log.error("engine process: reloading %s failed: %s", model_id, e)
                return False
        return True

    def _read_loop(self, sock: socket.socket, proc: Any) -> None:
        try:
            while True:
                rid, ok, payload = recv_frame(sock)
                if ok == "part":
                    stream = self._streams.get(rid)
                    if stream is not None:
                        stream.put(payload)
                    continue
                with self._state:
                    entry = self._pending.pop(rid, None)
                if entry is None or entry[0].done():
                    continue
                if ok:
                    entry[0].set_result(payload)
                else:
                    entry[0].set_exception(rebuild_error(payload))
        except (ConnectionError, OSError, EOFError, pickle.UnpicklingError):
            pass
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:  # the socket broke but the process lives on: end it (it is restarted)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        with contextlib.suppress(OSError):
            sock.close()
        reason = _describe_exit(proc.returncode)
        with self._state:
            proc._asn_dead = True
            lost = [r for r, (_, p) in self._pending.items() if p is proc]
            futures = [self._pending.pop(r)[0] for r in lost]
        for f in futures:
            if not f.done():
                f.set_exception(EngineCrashed(f"the engine process crashed ({reason}) during this request; "
                                              "it is restarting"))

    # calls
    def _raw_call(self, op: str, payload: Any, timeout: float | None = None) -> Any:
        return self._send_call(op, payload, timeout)

    def _send_call(self, op: str, payload: Any, timeout: float | None = None, stream: Any = None) -> Any:
        """Send one call and wait for its answer; with `stream` (a callable taking the call id) the answer's
        future is handed to it instead of waited for."""
        with self._state:
            proc, sock = self._proc, self._sock
            if proc is None or sock is None or getattr(proc, "_asn_dead", False):
                raise EngineCrashed(f"the engine process is not running ({self.last_exit or 'not started'}); "
                                    "it is restarting")
            rid, self._next = self._next, self._next + 1
            fut: Future[Any] = Future()
            self._pending[rid] = (fut, proc)
            if stream is not None:
                self._streams[rid] = queue.SimpleQueue()
        try:
            data = frame((rid, op, payload))
            with self._send_lock:
                sock.sendall(data)
        except OSError as e:
            with self._state:
                self._pending.pop(rid, None)
                self._streams.pop(rid, None)
            raise EngineCrashed(f"the engine process went away ({e})") from None
        if stream is not None:
            return stream(rid, fut)
        try:
            return fut.result(timeout)
        except TimeoutError:  # stuck in native code: end it (the supervisor starts another)
            with self._state:
                self._pending.pop(rid, None)
            log.error("engine process pid %d did not answer '%s' within %g s; killing it", proc.pid, op, timeout)
            with contextlib.suppress(OSError):
                proc.kill()
            raise EngineCrashed(f"the engine process did not answer within {timeout:g} s; it is restarting") \
                from None

    def stream(
        self, model_id: str, requests: list[SynthesisRequest], wait_s: float | None = None
    ) -> Generator[tuple[int, Any], None, None]:
        """(index, audio) of `iter` on `model_id`, each as the child finishes it; closing early cancels the rest."""
        self.start()
        self.wait_ready(wait_s)
        parts: Generator[tuple[int, Any], None, None] = self._send_call("iter", (model_id, requests),
                                                                        stream=self._parts)
        return parts

    def _parts(self, rid: int, fut: Future[Any]) -> Generator[tuple[int, Any], None, None]:
        parts = self._streams[rid]
        try:
            while True:
                try:
                    yield parts.get(timeout=0.05)
                    continue
                except queue.Empty:
                    pass
                if fut.done():
                    while True:  # parts sent before the answer are read before it
                        try:
                            yield parts.get_nowait()
                        except queue.Empty:
                            break
                    fut.result()  # raises the child's error, or EngineCrashed
                    return
        finally:
            with self._state:
                self._streams.pop(rid, None)
            if not fut.done():  # the caller stopped listening: tell the child
                with contextlib.suppress(OSError), self._send_lock:
                    if self._sock is not None:
                        self._sock.sendall(frame((0, "cancel", rid)))

    def wait_ready(self, timeout: float | None = None) -> None:
        limit = self.ready_timeout_s if timeout is None else timeout
        with self._state:
            if not self._state.wait_for(lambda: self._ready or self._closing, limit):
                raise EngineCrashed(f"the engine process is restarting ({self.last_exit or 'starting'}); "
                                    "retry shortly")
            if self._closing:
                raise EngineCrashed("the engine process is shutting down")

    def call(self, op: str, model_id: str, arg: Any = None, wait_s: float | None = None,
             timeout_s: float | None = None) -> Any:
        """`op` on `model_id` in the child: waits up to `wait_s` for a restarting engine, and kills an engine that
        takes more than `timeout_s` (None: no limit) over the call."""
        self.start()
        self.wait_ready(wait_s)
        return self._raw_call(op, (model_id, arg), timeout_s)

    def warm_on_restart(self, model_id: str) -> None:
        hit = self._loaded.get(model_id)
        if hit is not None:
            self._loaded[model_id] = (True, hit[1])

    def load(self, model_id: str, warm: bool = False) -> Capabilities:
        """Load (and warm up, pin) `model_id` in the child; it is reloaded after every restart."""
        hit = self._loaded.get(model_id)
        if hit is not None:
            return hit[1]
        self.start()
        self.wait_ready()
        caps: Capabilities = self._raw_call("load", (model_id, warm), self.ready_timeout_s)
        self._loaded[model_id] = (warm, caps)
        return caps

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def unload(self, model_id: str) -> bool:
        """Unload `model_id` in the child (not reloaded after a restart). True if it was unloaded now."""
        if self._loaded.pop(model_id, None) is None or not self._ready:
            return False
        try:
            return bool(self._raw_call("unload", (model_id, None), self.ready_timeout_s))
        except EngineError as e:
            log.warning("engine process: unloading %s failed: %s", model_id, e)
            return False


class RemoteEngine:
    """An engine of the child, as the service and the jobs use one."""

    def __init__(self, proc: EngineProcess, model_id: str, caps: Capabilities, wait_s: float | None = None,
                 timeout_s: float | None = None):
        self.proc, self.model_id, self._caps, self.wait_s, self.timeout_s = proc, model_id, caps, wait_s, timeout_s

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def check(self, request: SynthesisRequest) -> None:
        self.proc.call("check", self.model_id, request, self.wait_s)

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Any]:
        out: list[Any] = self.proc.call("synth", self.model_id, list(requests), self.wait_s, self.timeout_s)
        return out

    def synthesize_iter(self, requests: Sequence[SynthesisRequest]) -> Generator[tuple[int, Any], None, None]:
        """Each (index, audio) as the child's engine hands it over (Piper's sentence pool: one by one)."""
        return self.proc.stream(self.model_id, list(requests), self.wait_s)

    def scripts_for(self, request: SynthesisRequest | None = None) -> tuple[str, ...] | None:
        scripts: tuple[str, ...] | None = self.proc.call("scripts", self.model_id, request, self.wait_s)
        return scripts

    def synthesize_each(self, requests: Sequence[SynthesisRequest]) -> list[Any]:
        """Audio or the typed error, per request (`batch_policy.run_each` in the child). EngineCrashed when it
        dies; an error fatal for the batch (e.g. the model's files are gone) is raised."""
        out = self.proc.call("each", self.model_id, list(requests), self.wait_s, self.timeout_s)
        return [rebuild_error(r.payload) if isinstance(r, _Failed) else r for r in out]

    def warmup(self) -> None:
        """Warm up now, and after every restart of the engine process."""
        self.proc.call("warmup", self.model_id, None, self.wait_s)
        self.proc.warm_on_restart(self.model_id)


class IsolatedCache:
    """The ModelCache calls of the miner's service and the jobs, served by an EngineProcess. `wait_s`: how long a
    call waits for a restarting engine before it fails with EngineCrashed (None: `ready_timeout_s`);
    `timeout_s`: a synthesis call that takes longer kills the engine (stuck in native code) and fails."""

    def __init__(self, proc: EngineProcess, wait_s: float | None = None, timeout_s: float | None = None):
        self.proc, self.wait_s, self.timeout_s = proc, wait_s, timeout_s
        self.device, self.dtype = proc.device, proc.dtype

    @contextlib.contextmanager
    def engine(self, model_id: str) -> Iterator[RemoteEngine]:
        from audiosubnet.engines import registry

        mid = registry.canonical_id(model_id)
        yield RemoteEngine(self.proc, mid, self.proc.load(mid), self.wait_s, self.timeout_s)

    def key(self, model_id: str, device: str, dtype: str) -> str:
        return model_id

    def pin(self, key: str) -> None:
        """Models stay loaded in the child (reloaded after a restart)."""

    def close(self) -> None:
        self.proc.close()


def isolated_cache(device: str = "auto", dtype: str = "auto", budget: Any = "auto", *, threads: int = 1,
                   wait_s: float | None = None) -> IsolatedCache:
    """An IsolatedCache on a new (not yet started) engine process; `close()` it when done."""
    return IsolatedCache(EngineProcess(device, dtype, budget, threads=threads), wait_s=wait_s)


if __name__ == "__main__":  # run as the module itself, so what it pickles names audiosubnet.engines.isolated
    from audiosubnet.engines import isolated

    isolated.child_main(sys.argv[1:])
