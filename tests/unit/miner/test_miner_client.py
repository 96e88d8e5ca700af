"""MinerClient against misbehaving miners (raw TCP servers on loopback): it returns a result, never raises,
and never waits past its deadline or reads past its byte cap."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from audiosubnet.protocol import AudioMeta
from audiosubnet.validator.client import MinerClient, base_url, scaled_timeout

WAV_HEADERS = AudioMeta(model="x:y", sample_rate=16000, duration_s=1.0, elapsed_ms=5.0).headers()


def _response(status: str, headers: dict[str, str], body: bytes = b"", length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body) if length is None else length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    n = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
             0)
    await reader.readexactly(n)


BEHAVIOURS = {
    "hang": None,
    "drip": None,
    "huge": None,
    "announce_huge": _response("200 OK", {"Content-Type": "audio/wav", **WAV_HEADERS}, b"", length=10**9),
    "garbage": b"\x00\x01 this is not http at all\r\n\r\n",
    "no_headers": _response("200 OK", {"Content-Type": "audio/wav"}, b"RIFF....WAVE"),
    "not_audio": _response("200 OK", {"Content-Type": "text/html", **WAV_HEADERS}, b"<html></html>"),
    "error_json": _response("429 Too Many Requests", {"Content-Type": "application/json", "Retry-After": "7"},
                            b'{"code":"overloaded","message":"the queue is full"}'),
    "error_junk": _response("500 Internal Server Error", {"Content-Type": "text/plain"}, b"x" * 50_000),
    "good": _response("200 OK", {"Content-Type": "audio/wav", **WAV_HEADERS}, b"RIFF" + b"\x00" * 100),
    "close": b"",
}


async def _serve(kind: str):
    async def handle(reader, writer):
        try:
            await _read_request(reader)
            if kind == "hang":
                await asyncio.sleep(30)
            elif kind == "drip":
                writer.write(_response("200 OK", {"Content-Type": "audio/wav", **WAV_HEADERS}, b"", length=1000))
                for _ in range(1000):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            elif kind == "huge":
                writer.write(_response("200 OK", {"Content-Type": "audio/wav", "Transfer-Encoding": "chunked",
                                                  **WAV_HEADERS}, b"").replace(b"Content-Length: 0\r\n", b""))
                chunk = b"x" * 65536
                for _ in range(2000):  # 128 MB if nobody stops reading
                    writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    await writer.drain()
            else:
                writer.write(BEHAVIOURS[kind])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


EXPECT = {
    "hang": (0, "timeout"), "drip": (0, "timeout"), "huge": (200, "too_large"), "announce_huge": (200, "too_large"),
    "garbage": (0, "protocol"), "no_headers": (200, "protocol"), "not_audio": (200, "protocol"),
    "error_json": (429, "http"), "error_junk": (500, "http"), "good": (200, None), "close": (0, "protocol"),
}


@pytest.mark.parametrize("kind", list(EXPECT))
def test_misbehaving_miner(kind, keys):
    async def go():
        server, endpoint = await _serve(kind)
        async with server, MinerClient(keys.validator, timeout_s=1.0, max_bytes=1_000_000) as c:
            t0 = time.perf_counter()
            r = await c.tts(endpoint, keys.miner.hotkey, {"text": "hello"})
            return r, time.perf_counter() - t0

    r, elapsed = asyncio.run(go())
    assert (r.status, r.error) == EXPECT[kind], (r.status, r.error, r.message)
    assert elapsed < 3.0
    assert r.ok == (kind == "good")
    if kind == "error_json":
        assert r.code == "overloaded" and r.message == "the queue is full" and r.retry_after == 7
    if kind == "error_junk":
        assert len(r.message) <= 300


def test_unreachable_and_unusable_endpoints(keys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused

    async def go():
        async with MinerClient(keys.validator, timeout_s=2.0) as c:
            return (await c.tts(dead, keys.miner.hotkey, {"text": "x"}),
                    await c.tts(None, keys.miner.hotkey, {"text": "x"}),
                    await c.tts("http://[::1", keys.miner.hotkey, {"text": "x"}),
                    await c.info(dead))

    refused, none, bad, info = asyncio.run(go())
    assert (refused.status, refused.error) == (0, "connect")
    assert none.error == "bad_endpoint" and bad.error == "bad_endpoint" and info is None


def test_helpers():
    assert base_url("1.2.3.4:8091") == "http://1.2.3.4:8091" and base_url("https://m.example/") == "https://m.example"
    assert scaled_timeout("x" * 100) == pytest.approx(4.0) and scaled_timeout("x" * 10**6) == 60.0


def test_a_kept_alive_connection_closed_as_it_is_reused_is_retried_once_with_a_fresh_nonce(keys):
    """A miner's idle timeout can close a kept-alive connection just as the validator's next round reuses it:
    the request is never answered. The client retries once on a new connection, signed again (the miner would
    reject the old nonce), within the same deadline; an honest miner is not scored as broken."""
    from bittensor import http_auth

    nonces: list[tuple[int, str]] = []  # (connection, nonce) per request seen

    async def handle(reader, writer):
        conn = len({c for c, _ in nonces}) + 1
        try:
            for served in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
                await reader.readexactly(n)
                nonce = next(ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                             if ln.lower().startswith(http_auth.HEADER_NONCE.lower().encode()))
                nonces.append((conn, nonce))
                if served == 1:  # the race: read, then closed without an answer
                    return
                writer.write(BEHAVIOURS["good"])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def go():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        endpoint = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server, MinerClient(keys.validator, timeout_s=2.0) as c:
            return [await c.tts(endpoint, keys.miner.hotkey, {"text": "hello"}) for _ in range(2)]

    first, second = asyncio.run(go())
    assert first.ok and second.ok, (second.error, second.message)
    assert [c for c, _ in nonces] == [1, 1, 2]  # answered; reused and dropped; retried on a new connection
    assert len({n for _, n in nonces}) == 3
