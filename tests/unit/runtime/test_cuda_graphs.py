"""GraphCache: when it captures, replays, falls back and forgets; with a fake capture that keeps a CUDA graph's
semantics (conftest.FakeCapture: static inputs copied in, static outputs rewritten in place on replay), on the CPU.
The real capture runs in tests/unit/engines/test_mms_engine.py::test_cuda_graphs_equal_eager (CUDA only)."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from audiosubnet.runtime.cuda_graphs import GraphCache  # noqa: E402


def stage(x, y):
    return x * 2 + y, x.sum(-1)


def test_a_shape_is_captured_after_it_was_seen_then_replayed_with_new_values(fake_capture):
    fake = fake_capture()
    cache = GraphCache(stage, after=1, capture=fake, enabled=True)
    x, y = torch.ones(2, 3), torch.zeros(2, 3)
    cache(x, y)
    assert fake.captures == 0 and cache.stats.eager == 1  # first sighting: eager
    for k in range(2, 5):  # second sighting captures, then replays; the values change, the shapes do not
        a, b = torch.full((2, 3), float(k)), torch.arange(6.0).view(2, 3)
        out, total = cache(a, b)
        assert torch.equal(out, a * 2 + b) and torch.equal(total, a.sum(-1))
    assert fake.captures == 1 and cache.stats.replays == 3 and len(cache) == 1


def test_outputs_are_the_graphs_own_tensors_until_its_next_call(fake_capture):
    cache = GraphCache(stage, after=0, capture=fake_capture(), enabled=True)
    first, _ = cache(torch.ones(1, 2), torch.zeros(1, 2))
    kept = first.clone()
    second, _ = cache(torch.full((1, 2), 5.0), torch.zeros(1, 2))
    assert second is first and torch.equal(second, torch.full((1, 2), 10.0)) and torch.equal(kept, torch.full((1, 2), 2.0))


def test_each_shape_and_dtype_has_its_own_graph_and_the_least_recent_is_dropped(fake_capture):
    fake = fake_capture()
    cache = GraphCache(stage, after=0, size=2, capture=fake, enabled=True)
    shapes = [(1, 4), (2, 4), (1, 4), (3, 4)]  # (1, 4) used again, so (2, 4) is the least recent
    for s in shapes:
        cache(torch.ones(s), torch.ones(s))
    cache(torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    assert fake.captures == 4 and cache.stats.evicted == 2 and len(cache) == 2
    assert cache.shapes() == [[(3, 4), (3, 4)], [(1, 4), (1, 4)]]
    assert [k[0][1] for k in cache._graphs] == [torch.float32, torch.float64]


def test_shapes_captured_ahead_are_replayed_at_first_sight_and_never_evicted(fake_capture):
    """An engine's warm-up captures the shapes a fresh request meets: the first real call with one of them
    replays (no eager run), and a churn of other shapes does not push them out."""
    fake = fake_capture()
    cache = GraphCache(stage, after=1, size=2, max_numel=64, capture=fake, enabled=True)
    kept = [(1, k) for k in (4, 8, 12)]
    assert all(cache.capture(torch.zeros(s), torch.zeros(s)) for s in kept)
    assert cache.capture(torch.zeros(1, 4), torch.zeros(1, 4))  # held already: not captured twice
    assert not cache.capture(torch.zeros(9, 9), torch.zeros(9, 9))  # over max_numel
    assert fake.captures == 3
    for n in range(2, 8):  # other shapes come and go (each seen twice: captured, LRU-evicted among themselves)
        for _ in range(2):
            cache(torch.ones(n, 3), torch.ones(n, 3))
    assert all([[s, s]] == [sh for sh in cache.shapes() if sh == [s, s]] for s in kept)
    eager = cache.stats.eager
    out, _ = cache(torch.full((1, 8), 3.0), torch.ones(1, 8))
    assert cache.stats.eager == eager and torch.equal(out, torch.full((1, 8), 7.0))
    assert len(cache) == 4 and cache.stats.evicted == 5
    assert not GraphCache(stage, capture=fake, enabled=False).capture(torch.zeros(1, 4), torch.zeros(1, 4))


def test_large_shapes_stay_eager(fake_capture):
    fake = fake_capture()
    cache = GraphCache(stage, after=0, max_numel=8, capture=fake, enabled=True)
    for _ in range(3):
        out, _ = cache(torch.ones(3, 3), torch.ones(3, 3))
    assert fake.captures == 0 and cache.stats.eager == 3 and torch.equal(out, torch.full((3, 3), 3.0))
    cache(torch.ones(2, 4), torch.ones(2, 4))
    assert fake.captures == 1


def test_a_failed_capture_turns_the_cache_off_with_one_warning_and_the_answer_is_still_right(caplog, fake_capture):
    cache = GraphCache(stage, name="mms durations", after=0,
                       capture=fake_capture(fail=RuntimeError("operation not permitted when stream is capturing")),
                       enabled=True)
    with caplog.at_level(logging.WARNING, logger="audiosubnet.runtime.cuda_graphs"):
        for _ in range(3):
            out, total = cache(torch.ones(2, 2), torch.ones(2, 2))
    assert torch.equal(out, torch.full((2, 2), 3.0)) and torch.equal(total, torch.full((2,), 2.0))
    assert not cache.enabled and "not permitted" in cache.stats.failed and cache.stats.eager == 3
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA graphs off for mms durations (capture failed: operation not permitted when stream is capturing); "
        "running eagerly"]


@pytest.mark.parametrize("value, on", [("0", False), ("off", False), ("1", True), (None, True)])
def test_the_environment_switch(monkeypatch, value, on, fake_capture):
    if value is None:
        monkeypatch.delenv("ASN_CUDA_GRAPHS", raising=False)
    else:
        monkeypatch.setenv("ASN_CUDA_GRAPHS", value)
    fake = fake_capture()
    cache = GraphCache(stage, after=0, capture=fake)
    cache(torch.ones(1), torch.ones(1))
    assert cache.enabled is on and fake.captures == int(on)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_a_real_graph_replays_new_values():
    cache = GraphCache(stage, after=1, enabled=True)
    for k in range(4):
        x = torch.full((4, 8), float(k), device="cuda")
        out, total = cache(x, torch.ones(4, 8, device="cuda"))
        assert torch.equal(out, x * 2 + 1) and torch.equal(total, x.sum(-1))
    assert cache.stats.captured == 1 and cache.stats.replays == 3 and not cache.stats.failed  # capture, then replay


@cuda
def test_a_real_capture_that_syncs_falls_back_and_cuda_still_works(caplog):
    def syncs(x):
        return (x * float(x.sum().item()),)  # .item() asks the host: not allowed while capturing

    cache = GraphCache(syncs, after=0, enabled=True)
    with caplog.at_level(logging.WARNING, logger="audiosubnet.runtime.cuda_graphs"):
        (out,) = cache(torch.ones(3, device="cuda"))
        (again,) = cache(torch.ones(3, device="cuda"))
    assert not cache.enabled and cache.stats.failed and len(caplog.records) == 1
    assert torch.equal(out, torch.full((3,), 3.0, device="cuda")) and torch.equal(again, out)
    assert torch.equal(torch.arange(3, device="cuda") * 2, torch.tensor([0, 2, 4], device="cuda"))
