"""Closed-loop clients fill whole batches: after an engine call the batcher waits (briefly) for the clients it has
just answered, instead of settling into two alternating half batches, one waiting while the other runs. A single
client that sends one request after another is never kept waiting for that."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.service.batching import ServiceConfig, TtsService

# an engine whose call costs the same at any batch size (as a GPU below its saturation), 64 a batch at most
MODEL = "fake:delay_ms=80,max_batch=64,ms_per_char=1"


def closed_loop(fill_wait_ms: float, clients: int, seconds: float, think_s: float
                ) -> tuple[list[int], int, list[float]]:
    """`clients` each send a request, wait for the answer, spend about `think_s` (the network, the client's own
    work: from a fifth to 1.8 times it) and send the next; returns the engine's batch sizes, the answers and each
    answer's latency."""
    svc = TtsService(ServiceConfig(models=(MODEL,), max_batch=64, max_wait_ms=2.0, fill_wait_ms=fill_wait_ms),
                     cache=EngineCache(None, "cpu", "float32"))
    latencies: list[float] = []
    rng = random.Random(0)

    async def client(i: int, end: float) -> int:
        n = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            await svc.synthesize(f"Client {i} request {n}.")
            latencies.append(time.monotonic() - t0)
            n += 1
            await asyncio.sleep(rng.uniform(0.2, 1.8) * think_s)
        return n

    async def go() -> int:
        await svc.start()
        try:
            await svc.synthesize("Warm up.")
            FakeEngine.calls.clear()
            end = time.monotonic() + seconds
            return sum(await asyncio.gather(*(client(i, end) for i in range(clients))))
        finally:
            await svc.drain(5)
            await svc.stop(timeout=5)

    answers = asyncio.run(go())
    return [n for m, n in FakeEngine.calls if m.startswith("delay_ms=80")], answers, latencies


def test_closed_loop_clients_run_full_batches():
    halves, before, _ = closed_loop(0.0, 64, 2.5, 0.010)
    full, after, _ = closed_loop(30.0, 64, 2.5, 0.010)
    print(f"off: mean batch {statistics.mean(halves):.1f}, {before} answers; "
          f"on: mean batch {statistics.mean(full):.1f}, {after} answers")
    assert statistics.mean(halves) < 40  # the failure this is about: halves of ~32
    assert statistics.mean(full[2:]) > 48 and after > 1.25 * before


def test_one_client_after_another_is_not_kept_waiting():
    sizes, answers, lat = closed_loop(60.0, 1, 1.5, 0.0)
    assert set(sizes) == {1}
    assert statistics.median(lat) < 0.080 + 0.040, statistics.median(lat)  # 80 ms engine, not + 60 ms fill wait


def lone_after_burst(fill_wait_ms: float) -> float:
    """Median time of a request sent alone right after a burst of four came back together."""
    svc = TtsService(ServiceConfig(models=(MODEL,), max_batch=64, max_wait_ms=2.0, fill_wait_ms=fill_wait_ms),
                     cache=EngineCache(None, "cpu", "float32"))

    async def go() -> list[float]:
        await svc.start()
        try:
            took = []
            for _ in range(5):
                await asyncio.gather(*(svc.synthesize(f"Sentence {k} of a stream.") for k in range(4)))
                t0 = time.monotonic()
                await svc.synthesize("The next request, alone.")
                took.append(time.monotonic() - t0)
            return took
        finally:
            await svc.drain(5)
            await svc.stop(timeout=5)

    return statistics.median(asyncio.run(go()))


def test_a_lone_request_after_a_burst_is_not_kept_waiting():
    """A stream's last sentences come back together, then the next request comes alone: it runs at once."""
    waiting, off = lone_after_burst(60.0), lone_after_burst(0.0)
    assert waiting < off + 0.030, (waiting, off)  # not the 60 ms fill wait on top of the engine's call
