"""Every device of a host: one supervised engine process per device, behind the cache surface the service uses.

`--devices` (setting `devices`) names the engine processes:

    all            every visible CUDA device (torch.cuda.device_count())
    0,1,3          these CUDA devices (also cuda:0,cuda:1); indices as torch numbers them, i.e. within
                   CUDA_VISIBLE_DEVICES when that is set
    cpu:N          N engine processes on the CPU (tests, or a CPU box with many cores); `cpu,cpu` is cpu:2

Each CUDA engine process sees its GPU alone: its environment has CUDA_VISIBLE_DEVICES set to that one GPU and
its engines are placed on `cuda`. That is sturdier than `cuda:i` in one shared view: every library that uses the
current device (CUDA graphs, onnxruntime, CTranslate2, the cache budget's "90% of the GPU"), and every stray
`torch.cuda` call, lands on the engine's own GPU and never puts a CUDA context on GPU 0. CPU engine processes
get an even share of the cores for torch (ASN_TORCH_THREADS, OMP_NUM_THREADS) unless those are set.

`EnginePool` offers what the service and the jobs use of a cache (`engine(model_id)`, `key`, `pin`, `unload`,
`is_loaded`, `close`; `parallel`: how many engine calls can run at once). Guarantees:
  - a model is loaded on every engine process (warmed on every one when the service warms it) and is reloaded
    by each process's own supervisor after that process restarts;
  - each call goes to the least-loaded live engine (fewest requests in flight; ties in turn), so a slow batch
    on one engine sends the next to another; a process that is restarting gets no new call while another is up;
  - an engine process that dies fails only the call it had (EngineCrashed, which the service answers 503);
    the others keep serving, and it comes back on its own;
  - per-device counters (`stats()`: batches, requests, busy seconds, in flight, restarts) for /metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from audiosubnet.engines.base import Capabilities, SynthesisRequest
from audiosubnet.engines.isolated import EngineProcess, RemoteEngine
from audiosubnet.errors import UsageError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CPU_ENGINES = 64
_SYNTAX = "Use all, a list of CUDA indices (0,1,3), or cpu:N for N CPU engine processes."


# ---- --devices -------------------------------------------------------------------------------------------
def cuda_device_count() -> int:
    """Visible CUDA devices (0 without torch or CUDA). Imports torch: call it only for a CUDA device list."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken driver counts as none
        return 0


def parse_devices(spec: str, device: str = "auto", count: Callable[[], int] | None = None) -> list[str]:
    """The engine processes of `--devices SPEC`, as labels: ['cuda:0', 'cuda:1'] or ['cpu:0', 'cpu:1'].
    `device` (--device) must agree with it (auto, or the same kind); `count` gives the visible CUDA devices
    (default: `cuda_device_count`, asked only for a CUDA list). UsageError, one line, for anything else."""
    count = count or cuda_device_count
    text = spec.strip().lower()
    where = f"--devices {spec.strip()}"
    if not text:
        raise UsageError(f"{where}: no device named", hint=_SYNTAX)
    if text == "all":
        n = count()
        if n == 0:
            raise UsageError(f"{where}: no CUDA device is visible",
                             hint="Check nvidia-smi and CUDA_VISIBLE_DEVICES, or use cpu:N for CPU engine processes.")
        labels = [f"cuda:{i}" for i in range(n)]
    elif text.startswith("cpu:"):
        n_text = text[4:].strip()
        if not n_text.isdigit() or not 1 <= int(n_text) <= MAX_CPU_ENGINES:
            raise UsageError(f"{where}: cpu:N needs a count from 1 to {MAX_CPU_ENGINES}", hint=_SYNTAX)
        labels = [f"cpu:{i}" for i in range(int(n_text))]
    else:
        items = [x.strip() for x in text.split(",")]
        if any(not x for x in items):
            raise UsageError(f"{where}: an empty item in the list", hint=_SYNTAX)
        cpus = [x for x in items if x == "cpu"]
        gpus = [x.removeprefix("cuda:") for x in items if x != "cpu"]
        bad = [x for x in gpus if not x.isdigit()]
        if bad:
            raise UsageError(f"{where}: '{bad[0]}' is not a device", hint=_SYNTAX)
        if cpus and gpus:
            raise UsageError(f"{where}: mixes the CPU and CUDA devices; an engine pool is all one kind",
                             hint=_SYNTAX)
        if cpus:
            labels = [f"cpu:{i}" for i in range(len(cpus))]
        else:
            idx = [int(x) for x in gpus]
            dup = next((i for k, i in enumerate(idx) if i in idx[:k]), None)
            if dup is not None:
                raise UsageError(f"{where}: device {dup} is listed twice", hint="One engine process per GPU.")
            n = count()
            missing = [i for i in idx if i >= n]
            if missing:
                seen = "no CUDA device" if n == 0 else f"CUDA devices 0-{n - 1}" if n > 1 else "CUDA device 0"
                raise UsageError(f"{where}: there is no CUDA device {missing[0]} (this machine sees {seen})",
                                 hint="Indices count within CUDA_VISIBLE_DEVICES; `--devices all` takes every one.")
            labels = [f"cuda:{i}" for i in idx]
    kind = labels[0].partition(":")[0]
    d = device.strip().lower()
    if d not in ("auto", "") and d.partition(":")[0] != kind:
        raise UsageError(f"--device {device} contradicts {where}",
                         hint=f"Leave --device out (or give --device {kind}) with --devices.")
    return labels


def child_placement(
    label: str, n_engines: int, environ: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """(device of the child's engines, its extra environment) for an engine process labelled `label`."""
    environ = os.environ if environ is None else environ
    kind, _, index = label.partition(":")
    if kind == "cuda":
        visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        i = int(index)
        return "cuda", {"CUDA_VISIBLE_DEVICES": visible[i] if i < len(visible) else str(i)}
    share = str(max(1, (os.cpu_count() or 1) // max(1, n_engines)))
    env = {k: share for k in ("ASN_TORCH_THREADS", "OMP_NUM_THREADS") if k not in environ}
    return "cpu", env


# ---- the pool ----------------------------------------------------------------------------------------------
@dataclass
class DeviceStats:
    device: str
    pid: int
    up: bool
    batches: int
    requests: int
    busy_seconds: float
    in_flight: int
    restarts: int


class _Member:
    """One engine process and its load: requests in flight, and counters for /metrics."""

    def __init__(self, label: str, proc: EngineProcess):
        self.label, self.proc = label, proc
        self.in_flight = 0  # requests inside calls now
        self.calls = 0  # calls now
        self.batches = 0
        self.requests = 0
        self.busy_s = 0.0  # time with at least one call in flight
        self._busy_since = 0.0

    def busy_seconds(self, now: float) -> float:
        return self.busy_s + (now - self._busy_since if self.calls else 0.0)


class EnginePool:
    """Engine processes, one per device, as one cache. Thread-safe; calls block their thread (off the loop)."""

    def __init__(self, procs: Sequence[EngineProcess], labels: Sequence[str], wait_s: float | None = None,
                 timeout_s: float | None = None):
        if not procs or len(procs) != len(labels):
            raise ValueError("an engine pool needs one label per engine process")
        self.members = [_Member(label, p) for label, p in zip(labels, procs, strict=True)]
        self.wait_s, self.timeout_s = wait_s, timeout_s
        self.device, self.dtype = procs[0].device, procs[0].dtype
        self._lock = threading.Lock()
        self._turn = 0  # where the next tie-break starts (round robin)
        self._loading = threading.Lock()

    @property
    def parallel(self) -> int:
        """Engine processes: calls that run at once (the service's slots and the batch jobs scale with it)."""
        return len(self.members)

    @property
    def procs(self) -> list[EngineProcess]:
        return [m.proc for m in self.members]

    def _each(self, fn: Callable[[_Member], T]) -> list[T]:
        """fn on every member at once; the first error is raised after all are done."""
        if len(self.members) == 1:
            return [fn(self.members[0])]
        with ThreadPoolExecutor(len(self.members), thread_name_prefix="asn-pool") as ex:
            futures = [ex.submit(fn, m) for m in self.members]
        return [f.result() for f in futures]

    # lifecycle
    def start(self) -> None:
        self._each(lambda m: m.proc.start())

    def close(self) -> None:
        self._each(lambda m: m.proc.close())

    # the cache surface
    @contextlib.contextmanager
    def engine(self, model_id: str) -> Iterator[PooledEngine]:
        from audiosubnet.engines import registry

        mid = registry.canonical_id(model_id)
        yield PooledEngine(self, mid, self._load(mid))

    def _load(self, model_id: str) -> Capabilities:
        caps = [m.proc._loaded.get(model_id) for m in self.members]
        if all(c is not None for c in caps):
            return caps[0][1]  # type: ignore[index]
        with self._loading:  # one load at a time across the pool's callers; every process loads in parallel
            return self._each(lambda m: m.proc.load(model_id))[0]

    def key(self, model_id: str, device: str, dtype: str) -> str:
        return model_id

    def pin(self, key: str) -> None:
        """Models stay loaded in every engine process (reloaded after a restart)."""

    def unload(self, key: str) -> bool:
        return any(self._each(lambda m: m.proc.unload(key)))

    def is_loaded(self, key: str) -> bool:
        return any(m.proc.is_loaded(key) for m in self.members)

    # routing
    def _least_loaded(self) -> _Member:
        """(under the lock) the least-loaded live member: fewest requests in flight, ties in turn; any member
        when none is up (the call then waits for a restart)."""
        n = len(self.members)
        order = [self.members[(self._turn + k) % n] for k in range(n)]
        live = [m for m in order if m.proc.ready] or order
        best = min(live, key=lambda m: m.in_flight)
        self._turn = (self.members.index(best) + 1) % n
        return best

    def pick(self) -> _Member:
        with self._lock:
            return self._least_loaded()

    @contextlib.contextmanager
    def use(self, requests: int) -> Iterator[_Member]:
        """Hold the least-loaded member for one call of `requests` requests."""
        with self._lock:
            m = self._least_loaded()
            m.in_flight += requests
            if m.calls == 0:
                m._busy_since = time.monotonic()
            m.calls += 1
        try:
            yield m
        finally:
            with self._lock:
                m.in_flight -= requests
                m.calls -= 1
                m.batches += 1
                m.requests += requests
                if m.calls == 0:
                    m.busy_s += time.monotonic() - m._busy_since

    def remote(self, m: _Member, model_id: str, caps: Capabilities) -> RemoteEngine:
        return RemoteEngine(m.proc, model_id, caps, self.wait_s, self.timeout_s)

    def stats(self) -> list[DeviceStats]:
        now = time.monotonic()
        with self._lock:
            return [DeviceStats(m.label, m.proc.pid or 0, m.proc.ready, m.batches, m.requests,
                                m.busy_seconds(now), m.in_flight, m.proc.restarts) for m in self.members]


class PooledEngine(RemoteEngine):
    """An engine of the pool: each call goes to the least-loaded engine process (a RemoteEngine there)."""

    def __init__(self, pool: EnginePool, model_id: str, caps: Capabilities):  # noqa: D107 - no one process
        self.pool, self.model_id, self._caps = pool, model_id, caps
        self.wait_s, self.timeout_s = pool.wait_s, pool.timeout_s
        self.proc = None  # type: ignore[assignment]  # no one process: each call picks its own

    def _on(self, m: _Member) -> RemoteEngine:
        return self.pool.remote(m, self.model_id, self._caps)

    def check(self, request: SynthesisRequest) -> None:
        self._on(self.pool.pick()).check(request)

    def scripts_for(self, request: SynthesisRequest | None = None) -> tuple[str, ...] | None:
        return self._on(self.pool.pick()).scripts_for(request)

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Any]:
        with self.pool.use(len(requests)) as m:
            return self._on(m).synthesize(requests)

    def synthesize_each(self, requests: Sequence[SynthesisRequest]) -> list[Any]:
        with self.pool.use(len(requests)) as m:
            return self._on(m).synthesize_each(requests)

    def synthesize_iter(self, requests: Sequence[SynthesisRequest]) -> Generator[tuple[int, Any], None, None]:
        with self.pool.use(len(requests)) as m:
            it = self._on(m).synthesize_iter(requests)
            try:
                yield from it
            finally:
                it.close()

    def warmup(self) -> None:
        """Warm up every engine process (and after each one's restarts), as the service warms one engine:
        the engine's warm-up, then a batch of two for an engine that batches."""
        caps = self._caps

        def one(m: _Member) -> None:
            remote = self._on(m)
            remote.warmup()
            if caps.batching and caps.max_batch > 1 and caps.tts:
                remote.synthesize([SynthesisRequest("Warm up the batch.", voice=caps.default_voice)] * 2)

        self.pool._each(one)


def engine_pool(labels: Sequence[str], dtype: str = "auto", budget: Any = "auto", *, threads: int = 1,
                wait_s: float | None = None, timeout_s: float | None = None,
                on_restart: Callable[[], None] | None = None) -> EnginePool:
    """An EnginePool of new (not yet started) engine processes, one per label of `parse_devices`;
    `close()` it when done."""
    procs = []
    for label in labels:
        device, env = child_placement(label, len(labels))
        procs.append(EngineProcess(device, dtype, budget, threads=threads, on_restart=on_restart, env=env))
    return EnginePool(procs, labels, wait_s=wait_s, timeout_s=timeout_s)
