"""Hardening of the miner's HTTP edge, in process: refusals before the body is read, hang-ups mid-body, log
injection, a stale metagraph, deregistered validators, default stakes, the body budget, a busy replay store and
unique nonces across processes."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from audiosubnet.chain.bittensor import _next_nonce
from audiosubnet.miner.app import ApiError, BodyBudget, clean
from audiosubnet.miner.policy import FINNEY_MIN_STAKE, default_min_stake

from .conftest import NETUID

TEXT = "Hello from the subnet."


def _asgi(h, headers: dict[str, str], chunks: list[bytes], *, hang_up: bool = False,
          target: str = "/v1/tts") -> dict:
    """One POST through the raw ASGI interface: the body arrives in `chunks`; `hang_up` sends http.disconnect
    after them instead of the end of the body. Returns status, headers, body and how often receive() ran."""
    sent: list[dict] = []
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if calls <= len(chunks):
            last = calls == len(chunks) and not hang_up
            return {"type": "http.request", "body": chunks[calls - 1], "more_body": not last}
        if hang_up:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # a client that never sends the rest

    async def send(message):
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": target, "raw_path": target.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8091)}
    h.run(asyncio.wait_for(h.app(scope, receive, send), 10))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": start["status"], "headers": {k.decode(): v.decode() for k, v in start["headers"]},
            "body": body, "receives": calls}


def _metric(h, name: str, **labels) -> float:
    value = h.ctx.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_unsigned_and_unadmitted_uploads_are_refused_before_the_body_is_read(harness_factory):
    h = harness_factory(max_clone_body_bytes=8 * 2**20)
    big = 8 * 2**20 - 10
    first = b"{" + b" " * 65535
    # no auth headers: 401 with Connection: close, receive() never called (nothing buffered)
    r = _asgi(h, {"content-length": str(big), "content-type": "application/json"}, [first], target="/v1/clone")
    assert r["status"] == 401 and r["receives"] == 0 and r["headers"]["connection"] == "close"
    # a well-formed claim by a registered hotkey without a validator permit, and by a stranger: 403, unread
    for signer in (h.keys.plain, h.keys.stranger):
        auth = h.signed(b"x", signer=signer, target="/v1/clone")
        r = _asgi(h, {"content-length": str(big), **auth}, [first], target="/v1/clone")
        assert r["status"] == 403 and r["receives"] == 0, r
    # signed for another miner, or stale: 401 unread
    auth = h.signed(b"x", target="/v1/clone", receiver=h.keys.validator.hotkey)
    assert _asgi(h, {"content-length": str(big), **auth}, [first], target="/v1/clone")["receives"] == 0
    stale = h.signed(b"x", target="/v1/clone", nonce_ns=time.time_ns() - 3600 * 10**9)
    assert _asgi(h, {"content-length": str(big), **stale}, [first], target="/v1/clone")["status"] == 401
    # a too-large declared body from a validator: 413 unread
    auth = h.signed(b"x")
    r = _asgi(h, {"content-length": str(10**9), **auth}, [first])
    assert r["status"] == 413 and r["receives"] == 0
    # the honest request still passes every check
    body = json.dumps({"text": TEXT}).encode()
    r = _asgi(h, {"content-type": "application/json", **h.signed(body)}, [body[:5], body[5:]])
    assert r["status"] == 200, r["body"][:300]


def test_a_hang_up_mid_body_is_counted_apart_and_logged_without_a_traceback(harness_factory, caplog):
    h = harness_factory()
    body = json.dumps({"text": TEXT * 20}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), **h.signed(body)}
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            r = _asgi(h, headers, [body[:10]], hang_up=True)
            assert r["status"] == 499
    assert _metric(h, "asn_miner_client_disconnects_total", endpoint="tts") == 5
    assert _metric(h, "asn_miner_requests_total", endpoint="tts", status="500") == 0
    assert _metric(h, "asn_miner_requests_total", endpoint="tts", status="499") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert h.tts({"text": TEXT}).status_code == 200  # and the miner is fine


def test_client_values_cannot_forge_log_lines(harness_factory, caplog):
    h = harness_factory()
    evil = "fake\n2026-01-01 INFO audiosubnet.miner.access tts caller=x status=200\r\x1b[2J"
    with caplog.at_level(logging.INFO, logger="audiosubnet.miner.access"):
        assert h.tts({"text": TEXT, "model": evil}).status_code == 422
    lines = [r.getMessage() for r in caplog.records if r.name == "audiosubnet.miner.access"]
    assert lines and all("\n" not in m and "\r" not in m and "\x1b" not in m for m in lines), lines
    assert "\\n2026" in lines[-1]
    assert clean("a\x00b" * 100, 10) == "a\\x00ba\\x00ba\\x00ba..."


def test_a_stale_metagraph_fails_closed_and_recovers(harness_factory, caplog):
    h = harness_factory()
    policy = h.ctx.policy
    assert h.tts({"text": TEXT}).status_code == 200
    policy._loaded_at -= policy.config.max_age_s + 1  # refreshes have been failing for too long
    with caplog.at_level(logging.ERROR, logger="audiosubnet.miner.policy"):
        r = h.tts({"text": TEXT})
        h.tts({"text": TEXT})
    assert r.status_code == 503 and "retry-after" in r.headers
    stale = [m.getMessage() for m in caplog.records if m.name == "audiosubnet.miner.policy"
             and "refusing every caller" in m.getMessage()]
    assert len(stale) == 1  # one line for the two refused requests (other loggers' records may be captured too)
    assert h.tts({"text": TEXT}, signer=h.keys.friend).status_code == 200  # the allow list still works
    policy.refresh()
    assert h.tts({"text": TEXT}).status_code == 200


def test_a_deregistered_validator_is_refused_after_the_next_refresh(harness_factory):
    h = harness_factory()
    assert h.tts({"text": TEXT}).status_code == 200
    assert h.chain.deregister(NETUID, h.keys.validator.hotkey)
    h.ctx.policy.refresh()
    r = h.tts({"text": TEXT})
    assert r.status_code == 403 and "not registered" in r.json()["message"]


def test_default_min_stake_per_network(harness_factory):
    assert default_min_stake("finney") == FINNEY_MIN_STAKE == 1000.0
    assert default_min_stake("wss://entrypoint-finney.opentensor.ai:443") == FINNEY_MIN_STAKE
    for net in ("sim", "test", "local", "ws://127.0.0.1:9944"):
        assert default_min_stake(net) == 0.0
    h = harness_factory(min_validator_stake=None)  # not given: sim's default, 0
    assert h.ctx.policy.config.min_stake == 0.0
    assert h.tts({"text": TEXT}, signer=h.keys.poor).status_code == 200


def test_body_budget_waits_then_refuses():
    async def go():
        b = BodyBudget(100)
        async with b.reserve(80, 1.0):
            with pytest.raises(ApiError) as e:
                async with b.reserve(30, 0.05):
                    pass
            assert e.value.status == 503 and e.value.headers["Retry-After"] == "1"

            async def later():
                async with b.reserve(30, 2.0):
                    return b.used

            waiter = asyncio.ensure_future(later())
            await asyncio.sleep(0.05)
            assert not waiter.done()
        assert await waiter == 30
        assert b.used == 0

    asyncio.run(go())


def test_a_busy_replay_store_answers_503_quickly(harness_factory):
    h = harness_factory()
    h.ctx.nonce_store.busy_timeout_s = 0.2
    h.ctx.nonce_store.close()  # reconnect with the short timeout
    locker = sqlite3.connect(h.ctx.nonce_store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        t0 = time.monotonic()
        r = h.tts({"text": TEXT})
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert time.monotonic() - t0 < 2.0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert h.tts({"text": TEXT}).status_code == 200


def test_verification_runs_off_the_event_loop(harness_factory):
    h = harness_factory()
    seen: list[bool] = []
    real = h.ctx.nonce_store.check_and_store

    def spy(hotkey, nonce):
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(hotkey, nonce)

    h.ctx.nonce_store.check_and_store = spy
    assert h.tts({"text": TEXT}).status_code == 200
    assert seen == [False]


_NONCES = """
import sys
from audiosubnet.chain.bittensor import _next_nonce
print("\\n".join(str(_next_nonce()) for _ in range(int(sys.argv[1]))))
"""


def test_nonces_are_unique_across_processes_and_threads():
    n = 10000
    procs = [subprocess.Popen([sys.executable, "-c", _NONCES, str(n)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    lists = [p.communicate(timeout=120)[0].split() for p in procs]
    got: list[int] = []
    lock = threading.Lock()

    def draw():
        mine = [_next_nonce() for _ in range(n)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [int(x) for xs in lists for x in xs] + got
    assert len(every) == 8 * n and len(set(every)) == len(every)
    now = time.time_ns()
    # never further ahead of the clock than the verifier's skew (2 s) allows: a burst of 40,000 draws in one process
    # runs ahead by at most 40,000 x 4,096 ns (each draw takes the next 4 us slot) = 164 ms
    assert all(now - 60 * 10**9 < x < now + 4 * n * (1 << 12) + 10**8 for x in every)
    assert len({x & 0xFFF for x in every[:n]}) == 1  # one tag per process
    assert len({xs[0] and int(xs[0]) & 0xFFF for xs in lists}) == 4  # a different tag in each process
