"""`asn mine --devices cpu:2`: two engine processes behind one queue. Under load both serve (two batches at
once); SIGKILL one in the middle of its batch and only that batch is answered 503 while the other engine's
requests are served; the killed engine comes back by itself within 30 s and serves again. Per-device metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

TEXT = "Hello from the subnet."


def _burst(h, n: int, kill_after_s: float | None = None, victim: int = 0):
    async def go():
        bodies = [json.dumps({"text": f"{TEXT} {i}"}).encode() for i in range(n)]
        tasks = [asyncio.ensure_future(h.apost("/v1/tts", b, h.signed(b))) for b in bodies]
        if kill_after_s is not None:  # once the victim's batch is inside it (and at least kill_after_s)
            await asyncio.sleep(kill_after_s)
            deadline = time.monotonic() + 10
            while h.cache.members[victim].in_flight == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            os.kill(h.cache.procs[victim].pid, signal.SIGKILL)
        return await asyncio.gather(*tasks)

    return h.run(go())


def _device(h, name: str, device: str) -> float:
    return h.ctx.metrics.registry.get_sample_value(f"asn_miner_device_{name}", {"device": device}) or 0.0


def test_two_engines_share_the_load_and_one_killed_costs_only_its_batch(harness_factory):
    h = harness_factory("fake:delay_ms=1000,max_batch=4", devices="cpu:2", max_wait_ms=150)
    assert h.cache.parallel == 2 and h.ctx.service.config.concurrency == 2
    assert all(p.is_loaded(h.ctx.service.default_model) for p in h.cache.procs)  # loaded (warmed) on both

    before = [_device(h, "batches_total", d) for d in ("cpu:0", "cpu:1")]
    t0 = time.monotonic()
    answers = _burst(h, 8)  # two batches of four, one on each engine, at the same time
    took = time.monotonic() - t0
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    per = [_device(h, "batches_total", d) - b for d, b in zip(("cpu:0", "cpu:1"), before, strict=True)]
    assert all(p >= 1 for p in per), per  # both engines served the burst
    assert took < 2.0 + 1.5  # not one after the other (2 x 1 s) plus this box's slack
    assert _device(h, "busy_seconds_total", "cpu:0") >= 1.0 and _device(h, "up", "cpu:1") == 1.0
    assert _device(h, "in_flight", "cpu:0") == 0.0

    victim = h.cache.procs[0]
    first_pid = victim.pid
    answers = _burst(h, 8, kill_after_s=0.3)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 4 + [503] * 4, [(r.status_code, r.text) for r in answers]
    refused = [r for r in answers if r.status_code == 503]
    assert all(r.headers.get("retry-after") and "crashed" in r.json()["message"] for r in refused)
    # meanwhile the live engine takes the new batches
    assert h.tts({"text": TEXT}).status_code == 200

    deadline = time.monotonic() + 30
    while not (victim.ready and victim.pid != first_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim.ready and victim.restarts == 1 and h.cache.procs[1].restarts == 0
    before = _device(h, "batches_total", "cpu:0")
    answers = _burst(h, 8)
    assert [r.status_code for r in answers] == [200] * 8
    assert _device(h, "batches_total", "cpu:0") > before  # the restarted engine serves again
    assert _device(h, "restarts_total", "cpu:0") == 1.0 and _device(h, "restarts_total", "cpu:1") == 0.0
    assert _device(h, "pid", "cpu:0") == victim.pid
    reg = h.ctx.metrics.registry
    assert reg.get_sample_value("asn_miner_engine_restarts_total") == 1.0
    assert reg.get_sample_value("asn_miner_requests_total", {"endpoint": "tts", "status": "500"}) is None
    assert b'asn_miner_device_requests_total{device="cpu:1"}' in h.ctx.metrics.render()
