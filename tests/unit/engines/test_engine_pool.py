"""The engine pool (`--devices`): device lists, each engine process's placement, least-loaded routing over real
CPU engine processes, and a killed engine that costs only its own call while the others serve."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.isolated import EngineCrashed
from audiosubnet.engines.pool import child_placement, engine_pool, parse_devices
from audiosubnet.errors import UsageError

SLOW = "fake:delay_ms=1200,max_batch=8"
FAST = "fake:default"


@pytest.mark.parametrize("spec,device,n,labels", [
    ("cpu:2", "auto", 0, ["cpu:0", "cpu:1"]),
    ("cpu,cpu,cpu", "cpu", 0, ["cpu:0", "cpu:1", "cpu:2"]),
    ("all", "cuda", 4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]),
    ("0, 2", "auto", 4, ["cuda:0", "cuda:2"]),
    ("cuda:1", "cuda:0", 2, ["cuda:1"]),
    (" ALL ", "auto", 1, ["cuda:0"]),
])
def test_device_lists(spec, device, n, labels):
    assert parse_devices(spec, device, count=lambda: n) == labels


@pytest.mark.parametrize("spec,device,n,message", [
    ("all", "auto", 0, "no CUDA device is visible"),
    ("0", "auto", 0, "there is no CUDA device 0 (this machine sees no CUDA device)"),
    ("0,5", "auto", 2, "there is no CUDA device 5 (this machine sees CUDA devices 0-1)"),
    ("0,cpu", "auto", 2, "mixes the CPU and CUDA devices"),
    ("cpu:0", "auto", 0, "cpu:N needs a count from 1 to 64"),
    ("cpu:x", "auto", 0, "cpu:N needs a count"),
    ("gpu1", "auto", 2, "'gpu1' is not a device"),
    ("1,1", "auto", 2, "device 1 is listed twice"),
    ("0,,1", "auto", 2, "an empty item"),
    ("", "auto", 2, "no device named"),
    ("0,1", "cpu", 2, "--device cpu contradicts --devices 0,1"),
    ("cpu:2", "cuda", 2, "--device cuda contradicts --devices cpu:2"),
])
def test_bad_device_lists_are_one_line_usage_errors(spec, device, n, message):
    with pytest.raises(UsageError) as e:
        parse_devices(spec, device, count=lambda: n)
    assert message in str(e.value) and "\n" not in str(e.value) and e.value.hint


def test_each_cuda_engine_sees_only_its_gpu_and_cpu_engines_share_the_cores():
    assert child_placement("cuda:1", 2, {}) == ("cuda", {"CUDA_VISIBLE_DEVICES": "1"})
    # indices count within the parent's CUDA_VISIBLE_DEVICES
    assert child_placement("cuda:1", 2, {"CUDA_VISIBLE_DEVICES": "4,6"}) == ("cuda", {"CUDA_VISIBLE_DEVICES": "6"})
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert child_placement("cpu:0", 2, {}) == ("cpu", {"ASN_TORCH_THREADS": share, "OMP_NUM_THREADS": share})
    assert child_placement("cpu:1", 2, {"OMP_NUM_THREADS": "3"}) == ("cpu", {"ASN_TORCH_THREADS": share})


@pytest.fixture(scope="module")
def pool():
    p = engine_pool(["cpu:0", "cpu:1"], "float32", None, threads=2, wait_s=30.0)
    p.start()
    with p.engine(SLOW), p.engine(FAST):  # loaded on both engine processes
        pass
    yield p
    p.close()


def _batches(pool) -> list[int]:
    return [s.batches for s in pool.stats()]


def test_models_load_on_every_engine_and_calls_take_turns(pool):
    assert pool.parallel == 2 and all(pool.is_loaded(m) for m in (pool.key(SLOW, "", ""), FAST))
    assert all(p.is_loaded(FAST) and p.is_loaded(SLOW) for p in pool.procs)
    assert len({p.pid for p in pool.procs}) == 2
    before = _batches(pool)
    with pool.engine(FAST) as e:
        for _ in range(4):  # idle engines tie: in turn
            assert e.synthesize_each([SynthesisRequest("Hello there.")])[0].duration > 0.1
    assert [a - b for a, b in zip(_batches(pool), before, strict=True)] == [2, 2]


def test_a_slow_batch_on_one_engine_sends_the_next_ones_to_the_other(pool):
    before = _batches(pool)
    with pool.engine(SLOW) as slow, pool.engine(FAST) as fast:
        t = threading.Thread(target=slow.synthesize_each, args=([SynthesisRequest(f"slow {i}") for i in range(3)],))
        t.start()
        deadline = time.monotonic() + 5
        while not any(s.in_flight for s in pool.stats()) and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = [s.in_flight for s in pool.stats()]
        assert sorted(busy) == [0, 3]
        t0 = time.monotonic()
        for _ in range(3):
            fast.synthesize_each([SynthesisRequest("Quick one.")])
        assert time.monotonic() - t0 < 1.0  # none of them waited behind the slow batch
        t.join(10)
    added = [a - b for a, b in zip(_batches(pool), before, strict=True)]
    slow_i = busy.index(3)
    assert added[slow_i] == 1 and added[1 - slow_i] == 3
    st = pool.stats()
    assert st[slow_i].busy_seconds >= 1.0 and st[slow_i].requests >= 3 and all(s.in_flight == 0 for s in st)


def test_a_killed_engine_fails_its_call_only_and_the_other_serves_meanwhile(pool):
    victim = pool.members[0]
    pid = victim.proc.pid
    errors: list[BaseException] = []

    def slow_call():
        try:
            with pool.engine(SLOW) as e:
                e.synthesize_each([SynthesisRequest("doomed")])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    pool._turn = 0  # the slow call goes to the victim (both idle: the tie starts at member 0)
    t = threading.Thread(target=slow_call)
    t.start()
    deadline = time.monotonic() + 5
    while victim.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], EngineCrashed)
    t0 = time.monotonic()
    with pool.engine(FAST) as e:  # the other engine serves at once, without waiting for the restart
        for _ in range(2):
            assert e.synthesize_each([SynthesisRequest("Still here.")])[0].duration > 0.1
    assert time.monotonic() - t0 < 3.0
    deadline = time.monotonic() + 30
    while not (victim.proc.ready and victim.proc.pid != pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim.proc.ready and victim.proc.restarts == 1 and pool.members[1].proc.restarts == 0
    assert victim.proc.is_loaded(SLOW) and victim.proc.is_loaded(FAST)  # reloaded by its supervisor
    before = victim.batches
    with pool.engine(FAST) as e:
        for _ in range(2):
            e.synthesize_each([SynthesisRequest("Back again.")])
    assert victim.batches == before + 1
    assert pool.stats()[0].restarts == 1 and pool.stats()[0].up


def test_unload_reaches_every_engine(pool):
    model = "fake:sr=8000"
    with pool.engine(model) as e:
        e.synthesize([SynthesisRequest("Loaded.")])
    assert all(p.is_loaded(model) for p in pool.procs)
    pool.unload(model)
    assert not pool.is_loaded(model)
    with pool.engine(model) as e:  # and loads again on use
        assert e.synthesize([SynthesisRequest("Again.")])[0].sample_rate == 8000
