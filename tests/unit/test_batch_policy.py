"""The one batch-failure policy (audiosubnet/batch_policy.py) and the front ends that use it."""

from __future__ import annotations

import errno

import pytest

from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import (
    AsnError,
    CacheBudgetError,
    DependencyError,
    EngineError,
    InputError,
    ModelNotDownloadedError,
)


@pytest.fixture
def cache():
    return EngineCache(budget_bytes=None, device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def _clear_calls():
    FakeEngine.calls.clear()


def texts(*t):
    from audiosubnet.engines.base import SynthesisRequest

    return [SynthesisRequest(x) for x in t]


# ---- the function ---------------------------------------------------------------------------
def test_an_untyped_error_fails_its_item_alone(cache):
    from audiosubnet.batch_policy import run_each

    with cache.engine("fake:error=oom") as engine:
        out = run_each(engine, texts("one", "room for two", "three"))
    assert [type(r).__name__ for r in out] == ["Audio", "EngineError", "Audio"]
    assert "RuntimeError" in str(out[1]) and "out of memory" in str(out[1])
    assert FakeEngine.calls[0][1] == 3 and len(FakeEngine.calls) == 4  # the batch, then item by item


def test_bad_items_are_rejected_before_the_batch(cache):
    from audiosubnet.batch_policy import run_each

    with cache.engine("fake:fail=boom") as engine:
        out = run_each(engine, texts("fine", "", "boom here", "fine too"))
    assert isinstance(out[1], InputError) and isinstance(out[2], InputError)
    assert not isinstance(out[0], Exception) and not isinstance(out[3], Exception)


@pytest.mark.parametrize("error", [
    ModelNotDownloadedError("fake:x"), DependencyError("torch", "gpu", "this engine"),
    CacheBudgetError("does not fit"), ImportError("no module named x"), OSError(errno.ENOSPC, "No space left"),
])
def test_fatal_errors_stop_the_batch_at_once(cache, monkeypatch, error):
    from audiosubnet.batch_policy import is_fatal, run_each

    assert is_fatal(error)
    with cache.engine("fake:default") as engine:
        def broken(requests):
            FakeEngine.calls.append(("broken", len(requests)))
            raise error
        monkeypatch.setattr(engine, "_synthesize", broken)
        with pytest.raises(type(error)):
            run_each(engine, texts("a", "b", "c"))
    assert len(FakeEngine.calls) == 1  # no item-by-item retries of a job-wide failure


@pytest.mark.parametrize("error", [RuntimeError("CUDA error: out of memory"), EngineError("x"), InputError("y"),
                                   MemoryError(), ValueError("nan"), OSError(errno.ENOENT, "gone")])
def test_item_errors_are_not_fatal(error):
    from audiosubnet.batch_policy import as_item_error, is_fatal

    assert not is_fatal(error)
    assert isinstance(as_item_error(error), AsnError)


def test_each_item_is_handed_over_as_it_settles_and_callback_errors_propagate(cache):
    from audiosubnet.batch_policy import run_each

    seen = []

    class Stop(Exception):
        pass

    def on_item(i, result):
        seen.append((i, type(result).__name__))
        if i == 2:
            raise Stop

    with cache.engine("fake:error=oom") as engine, pytest.raises(Stop):
        run_each(engine, texts("one", "oom", "three", "four"), on_item=on_item)
    assert seen[-1] == (2, "Audio") and (1, "EngineError") in seen


# ---- the front ends ---------------------------------------------------------------------------
def test_tts_batch_fails_only_the_row_whose_engine_call_raised(tmp_path, cache):
    """A RuntimeError('CUDA error: out of memory') on one of three rows: the other two are written."""
    from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch

    src = tmp_path / "p.csv"
    src.write_text("id,text\na,First row.\nb,This one runs out of memory: oom.\nc,Third row.\n")
    opts = BatchOptions(out_dir=tmp_path / "out", model="fake:error=oom")
    s = run_tts_batch(src, opts, cache)
    assert (s.ok, s.failed) == (2, 1)
    row = {r.id: r for r in s.rows}["b"]
    assert "out of memory" in row.error
    assert (opts.out_dir / "a.wav").is_file() and (opts.out_dir / "c.wav").is_file()


def test_tts_batch_stops_using_a_model_on_a_fatal_error(tmp_path, cache, monkeypatch):
    from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch

    def missing(self, requests):
        FakeEngine.calls.append((self.model, len(requests)))
        raise DependencyError("somepkg", "gpu", "this engine")

    monkeypatch.setattr(FakeEngine, "_synthesize", missing)
    src = tmp_path / "p.csv"
    src.write_text("id,text\na,One.\nb,Two.\nc,Three.\n")
    s = run_tts_batch(src, BatchOptions(out_dir=tmp_path / "out", model="fake:max_batch=2"), cache)
    assert (s.ok, s.failed) == (0, 3)
    assert all("somepkg" in r.error for r in s.rows)
    assert len(FakeEngine.calls) == 1  # neither retried row by row nor tried again on the next batch


def test_the_miner_service_fails_only_the_request_whose_engine_call_raised(cache):
    import asyncio

    from audiosubnet.service.batching import ServiceConfig, TtsService

    async def main():
        svc = TtsService(ServiceConfig(models=("fake:error=oom",), max_wait_ms=50, warmup=False), cache=cache)
        svc.load()
        await svc.start()
        try:
            return await asyncio.gather(*(svc.synthesize(t) for t in ("one", "oom", "three")),
                                        return_exceptions=True)
        finally:
            await svc.stop()

    ok1, failed, ok3 = asyncio.run(main())
    assert isinstance(failed, EngineError) and ok1.data and ok3.data
