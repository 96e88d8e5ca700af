"""`asn mine --workers N` in process: worker apps talk to the hub over a real Unix socket (one event loop).

What must exist once is shared by every worker: the queue and its batches, the per-caller rate limit, the
metrics; the hub's state reaches the workers' /health; a hub that goes away is a 503, never a hang.
(test_miner_app.py runs the whole request matrix against a worker too; tests/e2e has the processes.)
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from audiosubnet.engines.fake import FakeEngine
from audiosubnet.miner import workers

TEXT = "Hello from a worker."


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://miner")


async def _post(h, http: httpx.AsyncClient, text: str = TEXT) -> httpx.Response:
    body = json.dumps({"text": text}).encode()
    return await http.post("/v1/tts", content=body, headers={"content-type": "application/json", **h.signed(body)})


def test_two_workers_share_one_queue_one_rate_limit_and_one_registry(harness_factory):
    h = harness_factory("fake:delay_ms=80,max_batch=16", workers=True, max_batch=16, max_wait_ms=200,
                        rate_limit_per_min=60)  # 1/s, burst of 10 for the validator
    second = _client(h.worker_app())
    FakeEngine.calls.clear()

    async def burst():
        return await asyncio.gather(*(_post(h, h.http if i % 2 else second, f"{TEXT} {i}") for i in range(14)))

    rs = h.run(burst())
    codes = [r.status_code for r in rs]
    assert codes.count(200) == 10 and codes.count(429) == 4, codes  # one bucket for both workers
    limited = next(r for r in rs if r.status_code == 429)
    assert limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    sizes = [n for model, n in FakeEngine.calls if model == "delay_ms=80,max_batch=16"]
    assert sum(sizes) == 10 and len(sizes) == 1, sizes  # 10 > the 7 each worker got: both in one engine call
    text = h.run(second.get("/metrics")).text  # either worker shows the hub's one registry

    def counters(t: str) -> list[str]:
        return [line for line in t.splitlines() if line.startswith("asn_miner_requests_total")]

    assert counters(text) == counters(h.run(h.http.get("/metrics")).text)
    assert 'asn_miner_requests_total{endpoint="tts",status="200"} 10.0' in text
    assert 'asn_miner_requests_total{endpoint="tts",status="429"} 4.0' in text
    assert 'asn_miner_policy_rejections_total{reason="rate_limited"} 4.0' in text
    assert 'asn_miner_batch_size_count{model="fake:delay_ms=80,max_batch=16"} 1.0' in text
    h.run(second.aclose())


def test_auth_failures_of_workers_are_counted_in_the_hub(harness_factory):
    h = harness_factory(workers=True)
    second = _client(h.worker_app())
    body = json.dumps({"text": TEXT}).encode()
    headers = {"content-type": "application/json", **h.signed(body)}

    async def go():
        first = await h.http.post("/v1/tts", content=body, headers=headers)
        replay = await second.post("/v1/tts", content=body, headers=headers)  # the nonce store is shared too
        stranger = await second.post("/v1/tts", content=body, headers={
            "content-type": "application/json", **h.signed(body, signer=h.keys.stranger)})
        return first, replay, stranger

    first, replay, stranger = h.run(go())
    assert (first.status_code, replay.status_code, stranger.status_code) == (200, 401, 403)
    text = h.run(h.http.get("/metrics")).text
    assert 'asn_miner_auth_failures_total{reason="replayed"} 1.0' in text
    assert 'asn_miner_policy_rejections_total{reason="not_registered"} 1.0' in text
    h.run(second.aclose())


def test_worker_health_follows_the_hub_and_a_lost_hub_is_503(harness_factory, monkeypatch):
    from audiosubnet.service import hub

    monkeypatch.setattr(hub, "STATE_PUSH_S", 0.05)
    h = harness_factory(workers=True)
    lost = []
    h.links[0].on_lost = lambda: lost.append(True)

    async def wait_for(status: str, timeout: float = 5.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            r = await h.http.get("/health")
            if r.json()["status"] == status or time.monotonic() > deadline:
                return r
            await asyncio.sleep(0.02)

    async def go():
        ok = await wait_for("ok")
        await h.ctx.service.drain(timeout=5)  # the main process stops admitting (shutdown)
        draining = await wait_for("draining")
        refused = await _post(h, h.http)
        await h.hub.close()  # the main process is gone
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.02)
        gone = await _post(h, h.http)
        return ok, draining, refused, gone

    ok, draining, refused, gone = h.run(go())
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert draining.status_code == 503 and draining.json()["status"] == "draining"
    assert refused.status_code == 503 and refused.json()["code"] == "unavailable"
    assert lost and gone.status_code == 503 and gone.json()["code"] == "unavailable"


def test_frames_round_trip_and_errors_keep_their_kind():
    from audiosubnet.errors import AudioDecodeError, InputError, from_wire
    from audiosubnet.service.batching import Overloaded

    assert workers._error_payload(AudioDecodeError("bad wav"))[0] == "AudioDecodeError"
    assert workers._error_payload(InputError("too long")) == ("InputError", "too long", None, 0.0)
    assert workers._error_payload(Overloaded("full", 3.0)) == ("Overloaded", "full", None, 3.0)
    assert workers._error_payload(RuntimeError("secret path /x"))[1] == "internal error (RuntimeError)"
    exc = from_wire(workers._error_payload(Overloaded("full", 3.0)))
    assert isinstance(exc, Overloaded) and exc.retry_after == 3.0
    frame = workers._frame((7, "tts", {"text": "x" * 10}))
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
