"""ModelCache: the only owner of loaded weights in a process.

    cache = build_cache("auto", "auto", "auto")   # a command builds one and passes it down
    with cache.engine("piper:en_US-joe-medium") as engine:     # speech engines
        audio = engine.synthesize([SynthesisRequest("Hello.")])
    with cache.lease("asr:tiny.en", make_asr) as asr:          # anything Loadable (scorers)
        ...

- lazy: a model loads on its first lease;
- exactly one load per key under concurrent first requests (a lock per key);
- a leased model is never evicted; unloading a leased model is deferred to its last release;
- least-recently-used unleased, unpinned models are evicted when a load would exceed the budget
  (GPU bytes on CUDA, RAM on CPU); a load that cannot fit waits for leases to end, then fails;
- `pin()` keeps a model loaded; `unload()` frees it (and empties the CUDA allocator);
- `stats()` reports loaded models, bytes, hits, misses, evictions and load seconds.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from audiosubnet.errors import CacheBudgetError
from audiosubnet.runtime.loadable import Loadable

log = logging.getLogger(__name__)

L = TypeVar("L", bound=Loadable)


@dataclass
class _Entry:
    key: str
    obj: Loadable | None = None
    bytes: int = 0
    leases: int = 0
    pinned: bool = False
    loaded: bool = False
    load_seconds: float = 0.0
    hits: int = 0
    last_used: float = field(default_factory=time.monotonic)
    unload_when_free: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class EntryStats:
    key: str
    bytes: int
    leases: int
    pinned: bool
    hits: int
    load_seconds: float


@dataclass(frozen=True)
class CacheStats:
    device: str
    dtype: str
    budget_bytes: int | None
    used_bytes: int
    hits: int
    misses: int
    loads: int
    evictions: int
    load_seconds: float
    models: tuple[EntryStats, ...]


class ModelCache:
    def __init__(
        self,
        budget_bytes: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        wait_timeout_s: float = 120.0,
    ):
        self.budget_bytes = budget_bytes
        self.device = device
        self.dtype = dtype
        self.wait_timeout_s = wait_timeout_s
        self._cond = threading.Condition()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # LRU order: oldest first
        self._reserved = 0  # bytes promised to loads in progress
        self.hits = self.misses = self.loads = self.evictions = 0
        self.load_seconds = 0.0

    # ---- leases ----------------------------------------------------------------------------
    @contextmanager
    def lease(self, key: str, factory: Callable[[], L], *, device: str | None = None,
              dtype: str | None = None) -> Iterator[L]:
        """Yield the loaded object for `key`, loading it with `factory()` + `setup()` on a miss."""
        entry = self._acquire(key, factory, device or self.device, dtype or self.dtype)
        try:
            yield entry.obj  # type: ignore[misc]  # the object `factory` made for this key
        finally:
            self._release(entry)

    @staticmethod
    def key(name: str, device: str, dtype: str) -> str:
        return f"{name}@{device}/{dtype}"

    def _acquire(self, key: str, factory: Callable[[], Loadable], device: str, dtype: str) -> _Entry:
        with self._cond:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(key)
                self._entries[key] = entry
            entry.leases += 1  # a lease in progress: never evicted from here on
            self._entries.move_to_end(key)
        try:
            with entry.lock:  # per-key: concurrent first requests load once
                if entry.loaded:
                    with self._cond:
                        self.hits += 1
                        entry.hits += 1
                else:
                    self._load(entry, factory, device, dtype)
        except BaseException:
            with self._cond:
                entry.leases -= 1
                if not entry.loaded and entry.leases == 0 and self._entries.get(key) is entry:
                    del self._entries[key]
                self._cond.notify_all()
            raise
        entry.last_used = time.monotonic()
        return entry

    def _load(self, entry: _Entry, factory: Callable[[], Loadable], device: str, dtype: str) -> None:
        obj = factory()
        estimate = int(obj.estimate_bytes() or 0)
        with self._cond:
            self.misses += 1
            self._make_room(estimate, entry.key)
            self._reserved += estimate
        t0 = time.perf_counter()
        cuda_before = _cuda_allocated(device)
        try:
            obj.setup(device, dtype)
        except BaseException:
            with self._cond:
                self._reserved -= estimate
                self._cond.notify_all()
            raise
        secs = time.perf_counter() - t0
        cuda_after = _cuda_allocated(device) if cuda_before is not None else None
        measured = cuda_after - cuda_before if cuda_after is not None and cuda_before is not None else None
        size = int(measured) if measured and measured > 0 else int(obj.memory_bytes() or estimate)
        with self._cond:
            self._reserved -= estimate
            entry.obj, entry.bytes, entry.loaded = obj, size, True
            entry.load_seconds = secs
            self.loads += 1
            self.load_seconds += secs
            if self.budget_bytes is not None and self._used() > self.budget_bytes:
                self._evict_until(self.budget_bytes, exclude=entry.key, wait=False)
        log.info("loaded %s in %.2f s (%.1f MiB)", entry.key, secs, size / 2**20)

    def _release(self, entry: _Entry) -> None:
        with self._cond:
            entry.leases -= 1
            entry.last_used = time.monotonic()
            if entry.leases == 0 and entry.unload_when_free:
                self._drop(entry)
            self._cond.notify_all()

    # ---- budget ----------------------------------------------------------------------------
    def _used(self) -> int:
        return sum(e.bytes for e in self._entries.values() if e.loaded) + self._reserved

    def _evictable(self, exclude: str) -> list[_Entry]:
        return [e for e in self._entries.values()
                if e.loaded and e.leases == 0 and not e.pinned and e.key != exclude]

    def _make_room(self, need: int, key: str) -> None:
        """Called with the condition held: evict LRU entries until `need` more bytes fit."""
        if self.budget_bytes is None:
            return
        if need > self.budget_bytes:
            raise CacheBudgetError(
                f"{key} needs about {need / 2**20:.0f} MiB; the model cache budget is "
                f"{self.budget_bytes / 2**20:.0f} MiB",
                hint="Raise --cache-budget (or ASN_CACHE_BUDGET), or use a smaller model.",
            )
        self._evict_until(self.budget_bytes - need, exclude=key, wait=True)

    def _evict_until(self, target_used: int, exclude: str, wait: bool) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        while self._used() > target_used:
            candidates = self._evictable(exclude)
            if candidates:
                self._drop(candidates[0])  # oldest first (OrderedDict order is LRU)
                self.evictions += 1
                continue
            if not wait:
                log.warning("model cache over budget: %d > %d bytes (everything else is in use)",
                            self._used(), self.budget_bytes)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise CacheBudgetError(
                    f"no room to load {exclude}: {self._used() / 2**20:.0f} MiB of "
                    f"{(self.budget_bytes or 0) / 2**20:.0f} MiB are in use by leased or pinned models",
                    hint="Raise --cache-budget, or unpin models.",
                )
            self._cond.wait(timeout=min(left, 1.0))

    def _drop(self, entry: _Entry) -> None:
        """Unload with the condition held. Entry must not be leased."""
        obj = entry.obj
        entry.obj, entry.loaded, entry.bytes, entry.unload_when_free = None, False, 0, False
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        if obj is not None:
            try:
                obj.unload()
            except Exception:  # an engine failing to unload must not break the cache
                log.exception("unloading %s failed", entry.key)
        del obj
        _free_memory()
        log.info("unloaded %s", entry.key)

    # ---- control ---------------------------------------------------------------------------
    def pin(self, key: str) -> None:
        with self._cond:
            self._entries[key].pinned = True

    def unpin(self, key: str) -> None:
        with self._cond:
            if key in self._entries:
                self._entries[key].pinned = False
                self._cond.notify_all()

    def unload(self, key: str) -> bool:
        """Unload now, or when its last lease ends. Returns True if unloaded now."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or not entry.loaded:
                return False
            entry.pinned = False
            if entry.leases:
                entry.unload_when_free = True
                return False
            self._drop(entry)
            self._cond.notify_all()
            return True

    def clear(self) -> None:
        with self._cond:
            for key in list(self._entries):
                e = self._entries[key]
                if e.loaded and e.leases == 0:
                    self._drop(e)
                elif e.loaded:
                    e.unload_when_free = True
            self._cond.notify_all()

    def loaded(self) -> list[str]:
        """Keys of the loaded models, least recently used first."""
        with self._cond:
            return [k for k, e in self._entries.items() if e.loaded]

    def is_loaded(self, name: str) -> bool:
        """True if a model with this key, or key prefix `name@`, is loaded."""
        with self._cond:
            return any(e.loaded and (k == name or k.startswith(name + "@")) for k, e in self._entries.items())

    def stats(self) -> CacheStats:
        with self._cond:
            models = tuple(EntryStats(e.key, e.bytes, e.leases, e.pinned, e.hits, e.load_seconds)
                           for e in self._entries.values() if e.loaded)
            return CacheStats(self.device, self.dtype, self.budget_bytes, self._used(), self.hits,
                              self.misses, self.loads, self.evictions, self.load_seconds, models)


def _cuda_allocated(device: str) -> int | None:
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    torch.cuda.synchronize(device)
    return int(torch.cuda.memory_allocated(device))


def _free_memory() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---- building one -----------------------------------------------------------------------
C = TypeVar("C", bound=ModelCache)


def build_cache(device: str = "auto", dtype: str = "auto", budget: str | int | None = "auto",
                cls: type[C] = ModelCache) -> C:  # type: ignore[assignment]  # the default is a C
    """A cache for a device/dtype; budget 'auto' is 90% of GPU memory on CUDA, 50% of RAM on CPU."""
    from audiosubnet.config import parse_bytes
    from audiosubnet.runtime.device import Placement, total_memory_bytes

    place = Placement.resolve(device, dtype)
    budget_bytes = parse_bytes(budget)
    if budget_bytes is None:
        frac = 0.9 if place.device.startswith("cuda") else 0.5
        budget_bytes = int(total_memory_bytes(place.device) * frac)
    return cls(budget_bytes, place.device, place.dtype)


_command_cache: ModelCache | None = None
_command_lock = threading.Lock()


def configure_cache(device: str = "auto", dtype: str = "auto", budget: str | int | None = "auto",
                    cls: type[C] = ModelCache) -> C:  # type: ignore[assignment]  # the default is a C
    """The cache of a command's process, for its --device/--dtype/--cache-budget.

    Only commands (the owners of a process) call this; they pass the cache down to what they run. A cache
    that already holds models is kept (several commands run in one process under the tests), with a
    warning if the placement asked for differs.
    """
    global _command_cache
    new = build_cache(device, dtype, budget, cls)
    with _command_lock:
        old = _command_cache
        if isinstance(old, cls) and old.loaded():
            if (old.device, old.dtype) != (new.device, new.dtype):
                log.warning("model cache already holds models on %s/%s; keeping it", old.device, old.dtype)
            return old
        _command_cache = new
        return new
