"""Connection deadlines (miner/deadlines.py) on a real loopback uvicorn with the miner app: silent connections,
trickled headers, trickled bodies and idle keep-alive connections are closed, prompt clients are served; the
app's own body deadline answers 408 under a server without them. (Signed clients served while hundreds of slow
connections are open: tests/e2e/test_mine_hardening_e2e.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import pytest

from audiosubnet.chain.bittensor import sign_request
from audiosubnet.miner.deadlines import protocol_class, uvicorn_config

from .conftest import free_port

HEADER_S, BODY_S, KEEP_ALIVE_S = 0.6, 1.0, 0.6


@pytest.fixture
def served(harness_factory):
    import uvicorn

    h = harness_factory()
    port = free_port()
    server = uvicorn.Server(uvicorn_config(h.app, {"host": "127.0.0.1", "port": port, "log_config": None,
                                                   "access_log": False, "lifespan": "off",
                                                   "timeout_keep_alive": KEEP_ALIVE_S,
                                                   "header_timeout_s": HEADER_S, "body_timeout_s": BODY_S}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield h, port
    server.should_exit = True
    thread.join(10)


async def _closed_after(port: int, first: bytes, trickle: bytes | None, limit: float = 8.0) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    try:
        if first:
            writer.write(first)
            await writer.drain()
        while time.monotonic() - t0 < limit:
            if trickle:
                with contextlib.suppress(ConnectionError):
                    writer.write(trickle)
                    await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - t0
            if not data:
                return time.monotonic() - t0
        return float("inf")
    finally:
        writer.close()


def test_slow_and_idle_connections_are_closed_and_honest_ones_served(served):
    h, port = served
    body = json.dumps({"text": "Slowly " * 20}).encode()
    auth = "".join(f"{k}: {v}\r\n" for k, v in sign_request(h.keys.validator, "POST", "/v1/tts", body,
                                                             h.hotkey).items())
    slow_body_head = (f"POST /v1/tts HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n{auth}\r\n").encode()

    async def go():
        silent = _closed_after(port, b"", None)
        headers = _closed_after(port, b"POST /v1/tts HTTP/1.1\r\nHost: m\r\n", b"X")
        slow_body = _closed_after(port, slow_body_head, b" ")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: m\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        t0 = time.monotonic()
        await asyncio.wait_for(reader.read(), 8.0)  # the rest of the response, then the end of the stream
        idle = reader.at_eof()
        idle_s = time.monotonic() - t0
        return await asyncio.gather(silent, headers, slow_body), (idle, idle_s)

    (silent, headers, slow_body), (idle, idle_s) = asyncio.run(go())
    assert HEADER_S * 0.9 < silent < HEADER_S + 2.0, silent
    assert HEADER_S * 0.9 < headers < HEADER_S + 2.0, headers
    assert BODY_S * 0.9 < slow_body < BODY_S + 2.0, slow_body
    assert idle and idle_s < KEEP_ALIVE_S + 2.0, idle_s
    assert protocol_class(HEADER_S, BODY_S).header_timeout_s == HEADER_S

    async def prompt():  # a client that sends at once is served (the service itself runs in the harness's loop)
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
            return (await c.get("/v1/info")).status_code, (await c.get("/health")).status_code

    assert asyncio.run(prompt()) == (200, 200)
    disconnects = h.ctx.metrics.registry.get_sample_value("asn_miner_client_disconnects_total",
                                                          {"endpoint": "tts"})
    assert disconnects == 1.0  # the slow body, cut off by the deadline: a disconnect, not an error


def test_the_app_bounds_a_body_read_under_any_server(harness_factory):
    h = harness_factory(body_timeout_s=1.0)
    h.ctx.body_timeout_s = 0.3
    body = json.dumps({"text": "Hello."}).encode()
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(3600)

    async def send(m):
        sent.append(m)

    headers = [(k.lower().encode(), v.encode()) for k, v in h.signed(body).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/tts", "raw_path": b"/v1/tts", "query_string": b"", "root_path": "",
             "headers": headers + [(b"content-length", str(len(body)).encode())], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 2)}
    h.run(asyncio.wait_for(h.app(scope, receive, send), 5))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
