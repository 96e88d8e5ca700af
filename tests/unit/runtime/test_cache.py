"""ModelCache: one load per key under concurrency, leases, LRU under a budget, pins, unload, stats."""

from __future__ import annotations

import threading
import time

import pytest

from audiosubnet.errors import CacheBudgetError
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.loadable import Loadable

MiB = 2**20


class Model(Loadable):
    """A Loadable with a known size that records what happens to it."""

    live_bytes = 0  # bytes of all loaded Model objects (checked against the budget)
    max_live = 0
    lock = threading.Lock()

    def __init__(self, name: str, size: int, load_s: float = 0.0, fail: bool = False):
        super().__init__()
        self.name, self.size, self.load_s, self.fail = name, size, load_s, fail
        self.setups = 0
        self.unloaded = False

    def estimate_bytes(self) -> int:
        return self.size

    def setup(self, device: str, dtype: str) -> None:
        time.sleep(self.load_s)
        if self.fail:
            raise RuntimeError("load failed")
        self.setups += 1
        with Model.lock:
            Model.live_bytes += self.size
            Model.max_live = max(Model.max_live, Model.live_bytes)

    def unload(self) -> None:
        self.unloaded = True
        with Model.lock:
            Model.live_bytes -= self.size

    def memory_bytes(self) -> int:
        return self.size


@pytest.fixture(autouse=True)
def _reset():
    Model.live_bytes = Model.max_live = 0


def test_concurrent_first_use_loads_once():
    cache = ModelCache(budget_bytes=100 * MiB)
    made: list[Model] = []

    def factory():
        m = Model("a", MiB, load_s=0.2)
        made.append(m)
        return m

    seen = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        with cache.lease("a", factory) as m:
            seen.append(m)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and made[0].setups == 1
    assert all(m is made[0] for m in seen)
    s = cache.stats()
    assert (s.misses, s.hits, s.loads) == (1, 7, 1)


def test_lru_eviction_keeps_budget_and_order():
    cache = ModelCache(budget_bytes=30 * MiB)
    models = {}

    def get(name):
        with cache.lease(name, lambda: models.setdefault(name, Model(name, 10 * MiB))):
            pass

    for n in "abc":
        get(n)
    get("a")  # a is now the most recently used; b is the least
    get("d")  # must evict b
    assert set(cache.loaded()) == {"a", "c", "d"}
    assert models["b"].unloaded and not models["a"].unloaded
    get("e")  # evicts c (a and d are newer)
    assert set(cache.loaded()) == {"a", "d", "e"}
    assert Model.max_live <= 30 * MiB
    assert cache.stats().evictions == 2


def test_budget_never_exceeded_under_concurrent_pressure():
    cache = ModelCache(budget_bytes=25 * MiB, wait_timeout_s=30)
    errors = []

    def worker(i):
        name = f"m{i % 6}"
        try:
            with cache.lease(name, lambda: Model(name, 10 * MiB, load_s=0.01)):
                time.sleep(0.005)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Model.max_live <= 25 * MiB
    assert cache.stats().used_bytes <= 25 * MiB


def test_leased_model_survives_eviction_pressure():
    cache = ModelCache(budget_bytes=20 * MiB, wait_timeout_s=0.3)
    held = Model("held", 10 * MiB)
    with cache.lease("held", lambda: held) as m:
        for n in "xyz":  # each needs the other 10 MiB; 'held' must never be chosen
            with cache.lease(n, lambda n=n: Model(n, 10 * MiB)):
                pass
        assert not held.unloaded and m is held
        # a model that only fits by evicting the leased one waits, then fails clearly
        with pytest.raises(CacheBudgetError), cache.lease("big", lambda: Model("big", 15 * MiB)):
            pass
    assert "held" in cache.loaded()


def test_waiting_load_proceeds_when_lease_ends():
    cache = ModelCache(budget_bytes=10 * MiB, wait_timeout_s=5)
    first = Model("first", 10 * MiB)
    released = threading.Event()

    def holder():
        with cache.lease("first", lambda: first):
            time.sleep(0.3)
        released.set()

    t = threading.Thread(target=holder)
    t.start()
    time.sleep(0.05)
    with cache.lease("second", lambda: Model("second", 10 * MiB)):
        assert released.is_set()
    t.join()
    assert first.unloaded


def test_model_larger_than_budget_fails_at_once():
    cache = ModelCache(budget_bytes=5 * MiB)
    t0 = time.monotonic()
    with pytest.raises(CacheBudgetError, match="budget"), cache.lease("huge", lambda: Model("huge", 6 * MiB)):
        pass
    assert time.monotonic() - t0 < 1


def test_pinned_model_is_not_evicted():
    cache = ModelCache(budget_bytes=20 * MiB, wait_timeout_s=0.2)
    pinned = Model("p", 10 * MiB)
    with cache.lease("p", lambda: pinned):
        pass
    cache.pin("p")
    with cache.lease("q", lambda: Model("q", 10 * MiB)):
        pass
    with cache.lease("r", lambda: Model("r", 10 * MiB)):
        pass
    assert "p" in cache.loaded() and not pinned.unloaded
    cache.unpin("p")
    with cache.lease("s", lambda: Model("s", 10 * MiB)), cache.lease("t", lambda: Model("t", 10 * MiB)):
        pass
    assert pinned.unloaded


def test_unload_frees_now_or_after_last_lease():
    cache = ModelCache(budget_bytes=None)
    a = Model("a", MiB)
    with cache.lease("a", lambda: a):
        pass
    assert cache.unload("a") is True and a.unloaded and cache.loaded() == []
    b = Model("b", MiB)
    with cache.lease("b", lambda: b):
        assert cache.unload("b") is False  # in use: deferred
        assert not b.unloaded
    assert b.unloaded and cache.loaded() == []
    assert Model.live_bytes == 0
    # next lease loads a fresh copy
    b2 = Model("b", MiB)
    with cache.lease("b", lambda: b2) as m:
        assert m is b2 and b2.setups == 1


def test_failed_load_is_not_cached_and_retries():
    cache = ModelCache(budget_bytes=10 * MiB)
    with pytest.raises(RuntimeError), cache.lease("x", lambda: Model("x", MiB, fail=True)):
        pass
    assert cache.loaded() == [] and cache.stats().used_bytes == 0
    with cache.lease("x", lambda: Model("x", MiB)) as m:
        assert m.setups == 1


def test_stats_report_models_bytes_and_load_seconds():
    cache = ModelCache(budget_bytes=100 * MiB)
    with cache.lease("a", lambda: Model("a", 3 * MiB, load_s=0.05)):
        pass
    with cache.lease("a", lambda: Model("a", 3 * MiB)):
        pass
    s = cache.stats()
    assert s.used_bytes == 3 * MiB and s.budget_bytes == 100 * MiB
    assert [m.key for m in s.models] == ["a"] and s.models[0].hits == 1
    assert s.load_seconds >= 0.05 and s.misses == 1 and s.hits == 1
