"""`asn serve --workers N` in process: two worker apps talk to the hub over a real Unix socket (one event loop).

What must exist once is shared by both workers: the service (and its models), the per-key rate limit, the
metrics registry; saved voices are on disk, so a voice saved through one worker is used through the other; a
model's capabilities learnt when it loads reach the workers; a hub that goes away is a 503.
(tests/e2e/serve/test_serve_workers.py has the processes.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time

import httpx
import pytest

from audiosubnet.serve import workers
from audiosubnet.serve.app import create_app
from audiosubnet.serve.encode import decode_any
from audiosubnet.service import hub as hublib

from .conftest import speech_clip

TEXT = "Hello there, how are you?"


class Workers:
    """The hub of a Served app's context plus worker apps, each with its own link (as `--workers` runs them)."""

    def __init__(self, served):
        self.s = served
        self.hub = workers.serve_hub(served.ctx, hublib.hub_path("asn-serve-test-"))
        served.run(self.hub.start())
        self.links: list[hublib.HubLink] = []
        self.clients = [self.worker() for _ in range(2)]

    def worker(self) -> httpx.AsyncClient:
        link = hublib.HubLink(self.hub.path)
        self.links.append(link)
        self.s.run(link.connect())
        ctx = workers.worker_context(workers.ServeWorkerSpec.of(self.s.ctx, self.hub.path), link)
        self.s.run(ctx.service.start())
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://worker")

    def close(self) -> None:
        for c in self.clients:
            self.s.run(c.aclose())
        for link in self.links:
            self.s.run(link.close())
        self.s.run(self.hub.close())
        shutil.rmtree(self.hub.path.parent, ignore_errors=True)


@pytest.fixture
def make_workers(make_served, monkeypatch):
    monkeypatch.setattr(hublib, "STATE_PUSH_S", 0.05)
    made: list[Workers] = []

    def make(**serve) -> Workers:
        w = Workers(make_served(**serve))
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def _speech(client: httpx.AsyncClient, key: str | None = None, **body):
    body = {"input": TEXT, "voice": "alloy", "response_format": "wav", **body}
    return client.post("/v1/audio/speech", json=body, headers={"authorization": f"Bearer {key}"} if key else {})


def test_one_rate_limit_and_one_registry_for_both_workers(make_workers):
    w = make_workers(rate_limit_per_min=60, api_keys=["k1", "k2"])  # 1/s with a burst of 10, per key
    a, b = w.clients

    async def burst():
        return await asyncio.gather(*(_speech(a if i % 2 else b, "k1", input=f"{TEXT} {i}") for i in range(14)))

    codes = [r.status_code for r in w.s.run(burst())]
    assert codes.count(200) == 10 and codes.count(429) == 4, codes  # one bucket, not one per worker
    assert w.s.run(_speech(b, "k2")).status_code == 200  # another key has its own
    assert w.s.run(_speech(a, "wrong")).status_code == 401

    def counters(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if line.startswith((
            "asn_serve_requests_total", "asn_serve_rate_limited_total", "asn_serve_auth_failures_total"))
            and 'endpoint="metrics"' not in line)  # the first scrape is itself counted before the second

    auth = {"authorization": "Bearer k1"}
    via_a = counters(w.s.run(a.get("/metrics", headers=auth)).text)
    assert via_a == counters(w.s.run(b.get("/metrics", headers=auth)).text)
    assert 'asn_serve_requests_total{endpoint="speech",status="200"} 11.0' in via_a
    assert 'asn_serve_requests_total{endpoint="speech",status="429"} 4.0' in via_a
    assert "asn_serve_rate_limited_total 4.0" in via_a and "asn_serve_auth_failures_total 1.0" in via_a


def test_streams_and_saved_voices_through_either_worker(make_workers):
    w = make_workers()
    a, b = w.clients
    long = " ".join(f"Sentence number {i} of the text." for i in range(6))
    r = w.s.run(_speech(a, input=long, response_format="pcm"))
    assert r.status_code == 200 and "content-length" not in r.headers
    assert len(r.content) / 2 / 24000 == pytest.approx(len(long.replace(" ", "")) * 0.06, rel=0.3)
    sse = w.s.run(_speech(b, input=long, response_format="pcm", stream_format="sse"))
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and len(events) >= 3
    for fmt in ("mp3", "opus"):  # encoded in the worker: the hub's service makes only wav, flac and raw samples
        r = w.s.run(_speech(a, input=long, response_format=fmt))
        assert r.status_code == 200 and decode_any(r.content).duration == pytest.approx(
            len(long.replace(" ", "")) * 0.06, rel=0.3), fmt

    up = w.s.run(a.post("/v1/audio/voices", json={"audio": base64.b64encode(speech_clip(3.0)).decode(),
                                                  "text": "a reference", "name": "Ref"}))
    assert up.status_code == 201, up.text
    vid = up.json()["id"]
    used = w.s.run(_speech(b, voice=vid))
    assert used.status_code == 200 and used.headers["x-asn-model"] == "fake:clone=true", used.text
    assert vid in w.s.run(b.get("/v1/audio/voices")).json()["voices"]
    assert w.s.run(b.delete(f"/v1/audio/voices/{vid}")).status_code == 200
    gone = w.s.run(_speech(a, voice=vid))  # worker a used it (its decoded copy is cached): still gone for it
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "voice_not_found"
    assert w.s.run(a.post("/v1/audio/speech", content=b"{nope")).status_code == 400
    assert w.s.run(_speech(a, model="no-such-model")).status_code == 404


def test_capabilities_learnt_at_load_reach_the_workers_and_health_follows_the_hub(make_workers):
    w = make_workers(models=["fake:batching=loaded"], keep_alive="0.3s")
    a, _ = w.clients
    link = w.links[0]

    def max_batch() -> int:
        return w.s.run(a.get("/v1/models")).json()["data"][0]["asn"]["max_batch"]

    def until(cond, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            w.s.run(asyncio.sleep(0.02))
        return cond()

    assert max_batch() == 1  # listed, not loaded: no batching declared on the CPU
    assert w.s.run(_speech(a)).status_code == 200  # loads the model: it batches now
    assert until(lambda: max_batch() > 1)  # the hub's revision went up; the worker fetched the table again
    assert until(lambda: not link.state.loaded)  # keep-alive: the hub unloaded it after 0.3 s idle
    assert w.s.run(a.get("/health")).json()["models_loaded"] == []

    w.s.run(w.hub.close())  # the main process is gone
    assert until(lambda: link.lost)
    gone = w.s.run(_speech(a))
    assert gone.status_code == 503 and gone.json()["error"]["code"] == "unavailable"
