"""`asn serve --devices cpu:2`: the models load lazily on both engine processes, concurrent requests are served by
both, /metrics has a series per device, and the keep-alive unload reaches every engine process."""

from __future__ import annotations

import asyncio
import time

import httpx

from audiosubnet.config import load_settings
from audiosubnet.engines.pool import EnginePool
from audiosubnet.serve.server import build_serve


def test_serve_on_two_cpu_engines(tmp_path):
    settings = load_settings(home=tmp_path, model="fake:delay_ms=400,max_batch=2", device="cpu", dtype="float32",
                             devices="cpu:2", **{"serve.max_wait_ms": 50.0, "serve.max_batch": 2,
                                                 "serve.fill_wait_ms": 12.0, "serve.keep_alive": "1s"})
    ctx, app = build_serve(settings)
    pool = ctx.service.cache
    assert isinstance(pool, EnginePool) and pool.parallel == 2 and ctx.service.config.concurrency == 2
    config = ctx.service.config  # the serve section's batching settings reach the service
    assert (config.max_wait_ms, config.max_batch, config.fill_wait_ms) == (50.0, 2, 12.0)
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")
    try:
        loop.run_until_complete(ctx.service.start())
        assert not pool.is_loaded(ctx.service.default_model)  # lazy: nothing loaded before the first request

        async def burst(n: int):
            return await asyncio.gather(*[client.post("/v1/audio/speech", json={"input": f"Hello number {i}.",
                                                                                "response_format": "wav"})
                                          for i in range(n)])

        answers = loop.run_until_complete(burst(4))  # two batches of two, one on each engine
        assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
        assert all(p.is_loaded(ctx.service.default_model) for p in pool.procs)
        assert [s.batches for s in pool.stats()] == [1, 1]
        text = loop.run_until_complete(client.get("/metrics")).text
        for device in ("cpu:0", "cpu:1"):
            assert f'asn_serve_device_requests_total{{device="{device}"}} 2.0' in text
            assert f'asn_serve_device_up{{device="{device}"}} 1.0' in text

        deadline = time.monotonic() + 10  # keep-alive 1 s: unloaded from both engine processes
        while pool.is_loaded(ctx.service.default_model) and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.1))
        assert not any(p.is_loaded(ctx.service.default_model) for p in pool.procs)
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(ctx.service.stop(timeout=5))
        pool.close()
        loop.close()
