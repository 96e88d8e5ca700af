"""A lazily listed model (asn serve) batches once it is loaded, with the capabilities of its device."""

from __future__ import annotations

import asyncio

from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.service.batching import ServiceConfig, TtsService


def test_a_lazy_model_batches_once_loaded():
    model = "fake:batching=loaded,delay_ms=60,max_batch=16"
    svc = TtsService(ServiceConfig(models=(model,), lazy=True, max_wait_ms=20.0),
                     cache=EngineCache(None, "cpu", "float32"))

    async def go():
        await svc.start()
        try:
            await svc.synthesize("First, which loads the model.")
            FakeEngine.calls.clear()
            await asyncio.gather(*(svc.synthesize(f"Sentence number {i}.") for i in range(12)))
        finally:
            await svc.drain(5)
            await svc.stop(timeout=5)

    asyncio.run(go())
    sizes = [n for m, n in FakeEngine.calls if m.startswith("batching=loaded")]
    assert sum(sizes) == 12 and max(sizes) > 1, sizes  # listed as "no batching" (not loaded), batched once loaded


def test_a_lower_priority_number_is_served_first_fifo_among_equals():
    model = "fake:batching=false,delay_ms=40"
    svc = TtsService(ServiceConfig(models=(model,), max_wait_ms=1.0), cache=EngineCache(None, "cpu", "float32"))
    done: list[str] = []

    async def one(name: str, priority: int) -> None:
        await svc.synthesize(f"Request {name}.", priority=priority)
        done.append(name)

    async def go():
        await svc.start()
        try:
            busy = asyncio.ensure_future(one("busy", 1))  # takes the engine
            await asyncio.sleep(0.01)
            later = [asyncio.ensure_future(one(f"later{i}", 1)) for i in range(3)]  # queued behind it
            await asyncio.sleep(0.005)
            first = asyncio.ensure_future(one("first", 0))  # arrives last, served next
            await asyncio.gather(busy, *later, first)
        finally:
            await svc.drain(5)
            await svc.stop(timeout=5)

    asyncio.run(go())
    assert done == ["busy", "first", "later0", "later1", "later2"], done
