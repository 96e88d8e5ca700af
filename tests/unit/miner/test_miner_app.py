"""The miner app end to end in process: real btauth/1 signatures, the SimChain policy, the fake engine
through the real EngineCache, queue and HTTP stack; and the same matrix on a real loopback port."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet import protocol
from audiosubnet.chain.bittensor import sign_request
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.protocol import CloneRequest, TtsRequest
from audiosubnet.validator.client import MinerClient

TEXT = "Hello from the subnet."
# the same requests must get the same answers from a worker of `asn mine --workers N` (service in the hub)
MODES = pytest.mark.parametrize("workers", [False, True], ids=["one-process", "worker"])


def _json(r) -> dict:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"code", "message"}
    return body


@MODES
def test_signed_tts_returns_wav_with_headers(harness_factory, workers):
    h = harness_factory(workers=workers)
    r = h.tts({"text": TEXT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    a = audiolib.decode(r.content)
    assert a.sample_rate == 16000 and a.duration == pytest.approx(len(TEXT) * 0.06, abs=0.01)
    meta = protocol.AudioMeta.from_headers(r.headers)
    assert meta.model == "fake:default" and meta.sample_rate == 16000 and meta.protocol_version == "1"
    assert meta.duration_s == pytest.approx(a.duration, abs=1e-3) and meta.elapsed_ms > 0
    r = h.tts({"text": TEXT, "format": "flac", "sample_rate": 8000, "voice": "b", "seed": 7, "model": "fake"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    a = audiolib.decode(r.content)
    assert a.sample_rate == 8000 and r.headers["x-asn-voice"] == "b"


def _auth_matrix(h, send) -> dict[str, int]:
    """status of every kind of bad request; `send(body, headers, target)` posts raw bytes."""
    k = h.keys
    body = json.dumps({"text": TEXT}).encode()
    out = {"ok": send(body, h.signed(body), "/v1/tts")}
    out["unsigned"] = send(body, {}, "/v1/tts")
    forged = h.signed(body)
    sig = forged["X-Bittensor-Signature"]
    forged["X-Bittensor-Signature"] = sig[:-4] + ("0000" if sig[-4:] != "0000" else "1111")
    out["forged"] = send(body, forged, "/v1/tts")
    impostor = h.signed(body, signer=k.stranger)  # a valid signature by another key, claiming the validator
    impostor["X-Bittensor-Hotkey"] = k.validator.hotkey
    out["impostor"] = send(body, impostor, "/v1/tts")
    replay = h.signed(body)
    out["first"] = send(body, replay, "/v1/tts")
    out["replayed"] = send(body, replay, "/v1/tts")
    out["stale"] = send(body, h.signed(body, nonce_ns=time.time_ns() - 60 * 10**9), "/v1/tts")
    out["future"] = send(body, h.signed(body, nonce_ns=time.time_ns() + 60 * 10**9), "/v1/tts")
    out["wrong_receiver"] = send(body, h.signed(body, receiver=k.stranger.hotkey), "/v1/tts")
    out["tampered_body"] = send(body.replace(b"Hello", b"Jello"), h.signed(body), "/v1/tts")
    out["tampered_target"] = send(body, h.signed(body, target="/v1/tts?x=1"), "/v1/tts")
    out["unregistered"] = send(body, h.signed(body, signer=k.stranger), "/v1/tts")
    out["non_validator"] = send(body, h.signed(body, signer=k.plain), "/v1/tts")
    out["low_stake"] = send(body, h.signed(body, signer=k.poor), "/v1/tts")
    out["deny_list"] = send(body, h.signed(body, signer=k.enemy), "/v1/tts")
    out["allow_list"] = send(body, h.signed(body, signer=k.friend), "/v1/tts")
    q = "/v1/tts?trace=1"
    out["query_signed"] = send(body, h.signed(body, target=q), q)
    return out


EXPECTED = {"ok": 200, "unsigned": 401, "forged": 401, "impostor": 401, "first": 200, "replayed": 401,
            "stale": 401, "future": 401, "wrong_receiver": 401, "tampered_body": 401, "tampered_target": 401,
            "unregistered": 403, "non_validator": 403, "low_stake": 403, "deny_list": 403, "allow_list": 200,
            "query_signed": 200}


@pytest.mark.parametrize("mode", ["in-process", "loopback", "worker"])
def test_auth_and_policy_statuses(harness_factory, mode):
    h = harness_factory(loopback=mode == "loopback", workers=mode == "worker")
    bodies = {}

    def send(body, headers, target):
        r = h.post(target, body, headers)
        if r.status_code != 200:
            bodies[r.status_code] = _json(r)
        return r.status_code

    assert _auth_matrix(h, send) == EXPECTED
    assert bodies[401]["code"] == "unauthorized" and bodies[403]["code"] == "forbidden"
    metrics = h.run(h.http.get("/metrics")).text
    assert 'asn_miner_auth_failures_total{reason="replayed"} 1.0' in metrics
    assert 'asn_miner_policy_rejections_total{reason="low_stake"} 1.0' in metrics


@MODES
def test_client_results_for_good_and_refused_requests(harness_factory, workers):
    h = harness_factory(workers=workers)
    k = h.keys

    async def go():
        async with MinerClient(k.validator, transport=h.transport()) as c, \
                MinerClient(k.stranger, transport=h.transport()) as s:
            ok = await c.tts(h.base, h.hotkey, TtsRequest(text=TEXT))
            wrong = await c.tts(h.base, k.stranger.hotkey, TtsRequest(text=TEXT))  # miner is not that hotkey
            refused = await s.tts(h.base, h.hotkey, {"text": TEXT})
            invalid = await c.tts(h.base, h.hotkey, {"text": TEXT, "voice": "nobody"})
            info = await c.info(h.base)
            return ok, wrong, refused, invalid, info

    ok, wrong, refused, invalid, info = h.run(go())
    assert ok.ok and ok.meta.model == "fake:default" and audiolib.decode(ok.audio).duration > 1
    assert (wrong.status, wrong.error, wrong.code) == (401, "http", "unauthorized")
    assert (refused.status, refused.code) == (403, "forbidden") and not refused.ok
    assert (invalid.status, invalid.code) == (422, "invalid") and "unknown voice" in invalid.message
    assert info.hotkey == h.hotkey and info.default_model == "fake:default" and info.limits.max_text_chars == 512


@MODES
def test_bad_input_statuses(harness_factory, workers):
    h = harness_factory(max_body_bytes=4096, max_text_chars=100, workers=workers)
    assert h.tts(b"{not json").status_code == 400
    assert h.tts(b"[1, 2]").status_code == 400
    assert h.tts(b"").status_code == 400
    body = json.dumps({"text": "x"}).encode()
    assert h.post("/v1/tts", body, h.signed(body), content_type="text/plain").status_code == 400
    assert h.tts({"text": "a" * 101}).status_code == 422
    assert h.tts({"text": "   "}).status_code == 422
    assert h.tts({"text": TEXT, "model": "piper:elsewhere"}).status_code == 422
    assert h.tts({"text": TEXT, "voice": "zz"}).status_code == 422
    assert h.tts({"text": TEXT, "format": "mp3"}).status_code == 422
    assert h.tts({"text": TEXT, "sample_rate": 1000}).status_code == 422
    assert h.tts({"text": TEXT, "seed": -1}).status_code == 422
    assert h.tts({"text": 5}).status_code == 422
    big = json.dumps({"text": "a" * 5000}).encode()
    r = h.tts(big)
    assert r.status_code == 413 and _json(r)["code"] == "too_large"
    r = h.run(h.http.get("/v1/tts"))
    assert r.status_code == 405 and _json(r)["code"] == "method_not_allowed"
    assert h.run(h.http.get("/nowhere")).status_code == 404


def test_oversize_body_without_content_length_is_413(harness_factory):
    h = harness_factory(max_body_bytes=4096)
    body = json.dumps({"text": "b" * 8000}).encode()
    headers = {"content-type": "application/json", **h.signed(body)}

    async def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    r = h.run(h.http.post("/v1/tts", content=chunks(), headers=headers))
    assert r.status_code == 413


@MODES
def test_rate_limit_per_caller(harness_factory, workers):
    h = harness_factory(rate_limit_per_min=6, workers=workers)  # 0.1/s, burst of one
    assert h.tts({"text": TEXT}).status_code == 200
    r = h.tts({"text": TEXT})
    assert r.status_code == 429 and _json(r)["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert h.tts({"text": TEXT}, signer=h.keys.friend).status_code == 200  # buckets are per caller


@MODES
def test_full_queue_answers_429_with_retry_after(harness_factory, workers):
    h = harness_factory("fake:delay_ms=150,batching=false", queue_size=2, workers=workers)

    async def burst():
        reqs = []
        for _ in range(8):
            body = json.dumps({"text": TEXT}).encode()
            reqs.append(h.apost("/v1/tts", body, h.signed(body)))
        return await asyncio.gather(*reqs)

    rs = h.run(burst())
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) == 2 and codes.count(429) == 6, codes
    r429 = next(r for r in rs if r.status_code == 429)
    assert _json(r429)["code"] == "overloaded" and int(r429.headers["retry-after"]) >= 1


@MODES
def test_dynamic_batching_groups_concurrent_requests(harness_factory, workers):
    h = harness_factory("fake:delay_ms=60,max_batch=8", max_batch=4, max_wait_ms=20, workers=workers)
    FakeEngine.calls.clear()

    async def burst():
        reqs = []
        for i in range(12):
            body = json.dumps({"text": f"{TEXT} {i}"}).encode()
            reqs.append(h.apost("/v1/tts", body, h.signed(body)))
        return await asyncio.gather(*reqs)

    rs = h.run(burst())
    assert all(r.status_code == 200 for r in rs)
    sizes = [n for model, n in FakeEngine.calls if model == "delay_ms=60,max_batch=8"]
    assert sum(sizes) == 12 and max(sizes) == 4 and len(sizes) <= 5, sizes
    durations = sorted(round(audiolib.decode(r.content).duration, 2) for r in rs)
    assert len(set(durations)) == 2  # texts of two lengths: every caller got its own audio


@MODES
def test_one_bad_item_does_not_fail_its_batch(harness_factory, workers):
    h = harness_factory("fake:fail=boom,delay_ms=30", max_wait_ms=30, workers=workers)

    async def burst():
        reqs = []
        for text in ("fine one", "this goes boom", "fine two"):
            body = json.dumps({"text": text}).encode()
            reqs.append(h.apost("/v1/tts", body, h.signed(body)))
        return await asyncio.gather(*reqs)

    codes = [r.status_code for r in h.run(burst())]
    assert codes == [200, 422, 200]


def _ref_wav(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    return audiolib.encode(audiolib.Audio((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000), "wav")


@MODES
def test_clone_is_501_without_a_cloning_engine(harness_factory, workers):
    h = harness_factory(workers=workers)
    body = json.dumps({"text": TEXT, "reference_audio": base64.b64encode(_ref_wav(2)).decode()}).encode()
    r = h.post("/v1/clone", body, h.signed(body, target="/v1/clone"))
    assert r.status_code == 501 and _json(r)["code"] == "not_implemented"


@MODES
def test_clone_json_and_multipart(harness_factory, workers):
    h = harness_factory("fake:clone=true", workers=workers)
    ref = _ref_wav(3)
    req = CloneRequest(text=TEXT, reference_audio=ref, reference_text="a reference")

    async def go():
        async with MinerClient(h.keys.validator, transport=h.transport()) as c:
            a = await c.clone(h.base, h.hotkey, req)
            b = await c.clone(h.base, h.hotkey, req, multipart=True)
            long = await c.clone(h.base, h.hotkey, CloneRequest(text=TEXT, reference_audio=_ref_wav(31)))
            junk = await c.clone(h.base, h.hotkey, CloneRequest(text=TEXT, reference_audio=b"RIFF not audio"))
            return a, b, long, junk

    a, b, long, junk = h.run(go())
    assert a.ok and b.ok and a.audio == b.audio
    assert (long.status, long.code) == (422, "invalid") and "30 s" in long.message
    assert (junk.status, junk.code) == (422, "invalid")
    bad64 = json.dumps({"text": TEXT, "reference_audio": "@@@"}).encode()
    assert h.post("/v1/clone", bad64, h.signed(bad64, target="/v1/clone")).status_code == 422


@MODES
def test_a_second_model_serves_clone(harness_factory, workers):
    h = harness_factory("fake:default", clone_model="fake:clone=true,sr=22050", workers=workers)
    body = json.dumps({"text": TEXT, "reference_audio": base64.b64encode(_ref_wav(2)).decode()}).encode()
    r = h.post("/v1/clone", body, h.signed(body, target="/v1/clone"))
    assert r.status_code == 200 and r.headers["x-asn-model"] == "fake:clone=true,sr=22050"
    r = h.tts({"text": TEXT})
    assert r.status_code == 200 and r.headers["x-asn-model"] == "fake:default"
    info = protocol.InfoResponse.model_validate_json(h.run(h.http.get("/v1/info")).content)
    assert info.clone and [m.clone for m in info.models] == [False, True]


@MODES
def test_info_health_metrics(harness_factory, workers):
    h = harness_factory(workers=workers)
    info = protocol.InfoResponse.model_validate_json(h.run(h.http.get("/v1/info")).content)
    assert info.models[0].id == "fake:default" and info.models[0].voices == ["a", "b"] and not info.clone
    assert info.limits.formats == ["wav", "flac"] and info.netuid == 16
    health = h.run(h.http.get("/health"))
    assert health.status_code == 200 and health.json()["status"] == "ok"
    h.tts({"text": TEXT})
    m = h.run(h.http.get("/metrics")).text
    assert 'asn_miner_requests_total{endpoint="tts",status="200"} 1.0' in m
    assert "asn_miner_batch_size_bucket" in m and "asn_miner_audio_seconds_total" in m


def test_drain_finishes_in_flight_and_refuses_new_work(harness_factory):
    h = harness_factory("fake:delay_ms=200,batching=false", concurrency=2)

    async def scenario():
        first = []
        for _ in range(3):
            body = json.dumps({"text": TEXT}).encode()
            first.append(asyncio.ensure_future(h.apost("/v1/tts", body, h.signed(body))))
        await asyncio.sleep(0.05)
        drain = asyncio.ensure_future(h.ctx.service.drain(timeout=10))
        await asyncio.sleep(0.01)
        body = json.dumps({"text": TEXT}).encode()
        late = await h.apost("/v1/tts", body, h.signed(body))
        return await asyncio.gather(*first), late, await drain

    first, late, drained = h.run(scenario())
    assert [r.status_code for r in first] == [200, 200, 200]
    assert late.status_code == 503 and _json(late)["code"] == "unavailable"
    assert drained and h.run(h.http.get("/health")).json()["status"] == "draining"


def test_nonce_store_is_shared_between_miner_processes(harness_factory, tmp_path):
    """Two miner apps (two workers of one hotkey) on one nonce file: a request replayed to the other is refused."""
    a = harness_factory()
    b = harness_factory()
    from audiosubnet.miner.nonces import SqliteNonceStore

    shared = tmp_path / "nonces.db"
    a.ctx.nonce_store = SqliteNonceStore(shared)
    b.ctx.nonce_store = SqliteNonceStore(shared)
    body = json.dumps({"text": TEXT}).encode()
    headers = a.signed(body)
    assert a.post("/v1/tts", body, headers).status_code == 200
    assert b.post("/v1/tts", body, headers).status_code == 401


def test_sign_request_nonces_are_unique(keys):
    nonces = {sign_request(keys.validator, "POST", "/v1/tts", b"", keys.miner.hotkey)["X-Bittensor-Nonce"]
              for _ in range(500)}
    assert len(nonces) == 500
