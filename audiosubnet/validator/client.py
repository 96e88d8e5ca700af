"""The validator's HTTP client for miners: btauth/1-signed, bounded in time and bytes, never raising.

    async with MinerClient(wallet, timeout_s=12) as client:          # wallet: chain.bittensor.load_wallet(...)
        r = await client.tts(peer.endpoint, peer.hotkey, TtsRequest(text="Hello."))
        if r.ok:
            audio = audiolib.decode(r.audio)                         # r.meta: model, sample rate, duration...

Every request is signed for the receiving miner's hotkey (a fresh nonce per attempt), sent with a hard
deadline over the whole exchange (connect, send, and a slow drip of bytes all count), and read as a stream
that stops at `max_bytes`. A connection that fails before any response is retried once, within the deadline
(a kept-alive connection the miner closed just as it was reused). Whatever a miner does (refuse, hang, send
garbage or a gigabyte), the call returns a `MinerResult` with `ok=False` and an `error` code; it never raises for
the miner's behaviour.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from audiosubnet import protocol
from audiosubnet.protocol import AudioMeta, CloneRequest, InfoResponse, SeenRequest, SeenResponse, TtsRequest

DEFAULT_MAX_BYTES = 16 * 2**20  # 30 s of 48 kHz 16-bit mono WAV is 2.9 MB
_ERROR_BODY_CAP = 8 * 1024

# MinerResult.error codes
TIMEOUT = "timeout"  # the deadline passed (connect, send, or a slow/hanging response)
CONNECT = "connect"  # refused, unreachable, DNS, TLS
TOO_LARGE = "too_large"  # the response passed max_bytes
HTTP = "http"  # an error status (the miner's {code, message} is in `code` / `message`)
PROTOCOL = "protocol"  # broken HTTP, missing audio headers, not audio
BAD_ENDPOINT = "bad_endpoint"  # nothing to call (no endpoint published, unusable address)


@dataclass(frozen=True)
class MinerResult:
    endpoint: str
    hotkey: str
    status: int  # HTTP status; 0 when no response arrived
    latency_s: float  # from sending to the last byte (or the failure)
    audio: bytes | None = None  # the body of a 200 (WAV/FLAC)
    meta: AudioMeta | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # None when ok; else one of the codes above
    code: str | None = None  # the miner's error code (protocol.E_*), when it sent one
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.audio is not None and self.meta is not None

    @property
    def retry_after(self) -> float | None:
        v = self.headers.get("retry-after")
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None


def base_url(endpoint: str) -> str:
    """'1.2.3.4:8091' -> 'http://1.2.3.4:8091'; a URL passes through."""
    e = endpoint.strip().rstrip("/")
    return e if "://" in e else f"http://{e}"


def scaled_timeout(text: str, *, base_s: float = 2.0, per_char_s: float = 0.02, max_s: float = 60.0) -> float:
    """A per-request deadline that grows with the expected audio length (about 15 characters a second)."""
    return min(max_s, base_s + per_char_s * len(text))


def _one_line(s: Any, limit: int = 300) -> str:
    line = " ".join(str(s).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _TooLarge(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _NoResponse(Exception):
    """The connection failed before any response came back (the request may never have been read)."""


class MinerClient:
    def __init__(self, wallet: Any, *, timeout_s: float = 12.0, connect_timeout_s: float = 3.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_connections: int = 256, max_keepalive: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None, user_agent: str | None = None):
        """`wallet` signs (chain.bittensor.load_wallet(...), or a bittensor Keypair). `transport` swaps the
        network (tests pass httpx.ASGITransport(app))."""
        from audiosubnet import __version__
        from audiosubnet.chain.bittensor import sign_request

        self._sign = sign_request
        self.wallet = wallet
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive),
            headers={"User-Agent": user_agent or f"asn-validator/{__version__}", "Accept-Encoding": "identity"},
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> MinerClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- the protocol ----------------------------------------------------------------------------------
    async def tts(self, endpoint: str | None, hotkey: str, request: TtsRequest | dict[str, Any], *,
                  timeout_s: float | None = None, max_bytes: int | None = None) -> MinerResult:
        """POST /v1/tts. `request` is a TtsRequest or its dict."""
        data = request.model_dump(exclude_none=True) if isinstance(request, TtsRequest) else dict(request)
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return await self.post(endpoint, hotkey, protocol.PATH_TTS, body, timeout_s=timeout_s, max_bytes=max_bytes)

    async def clone(self, endpoint: str | None, hotkey: str, request: CloneRequest, *, multipart: bool = False,
                    timeout_s: float | None = None, max_bytes: int | None = None) -> MinerResult:
        """POST /v1/clone, with the reference as base64 JSON (default) or as a multipart file part."""
        fields = request.model_dump(exclude_none=True, exclude={"reference_audio"})
        if multipart:
            body, ctype = protocol.encode_multipart_clone(fields, request.reference_audio)
        else:
            import base64

            fields["reference_audio"] = base64.b64encode(request.reference_audio).decode("ascii")
            body, ctype = json.dumps(fields, ensure_ascii=False).encode(), "application/json"
        return await self.post(endpoint, hotkey, protocol.PATH_CLONE, body, content_type=ctype, timeout_s=timeout_s,
                               max_bytes=max_bytes)

    async def music(self, endpoint: str | None, hotkey: str, request: protocol.MusicRequest, *,
                    timeout_s: float | None = None, max_bytes: int | None = None) -> MinerResult:
        """POST /v1/music."""
        body = json.dumps(request.model_dump(exclude_none=True), ensure_ascii=False, separators=(",", ":")).encode()
        return await self.post(endpoint, hotkey, protocol.PATH_MUSIC, body, timeout_s=timeout_s, max_bytes=max_bytes)

    async def info(self, endpoint: str, *, timeout_s: float = 5.0) -> InfoResponse | None:
        """GET /v1/info, or None when the miner does not answer it properly."""
        r = await self.request(endpoint, "", "GET", protocol.PATH_INFO, b"", timeout_s=timeout_s,
                               max_bytes=256 * 1024, sign=False, expect_audio=False)
        if r.status != 200 or r.audio is None:
            return None
        try:
            return InfoResponse.model_validate_json(r.audio)
        except ValueError:
            return None

    async def seen(self, endpoint: str | None, hotkey: str, request: SeenRequest, *, timeout_s: float = 3.0,
                   max_bytes: int = 4 * 2**20) -> tuple[SeenResponse | None, int]:
        """POST /v1/seen (signed): (the miner's answer or None, bytes received)."""
        body = request.model_dump_json(exclude_none=True).encode()
        r = await self.request(endpoint, hotkey, "POST", protocol.PATH_SEEN, body, timeout_s=timeout_s,
                               max_bytes=max_bytes, expect_audio=False)
        size = len(r.audio or b"")
        if r.status != 200 or r.audio is None:
            return None, size
        try:
            return SeenResponse.model_validate_json(r.audio), size
        except ValueError:
            return None, size

    async def post(self, endpoint: str | None, hotkey: str, path: str, body: bytes, *,
                   content_type: str = "application/json", timeout_s: float | None = None,
                   max_bytes: int | None = None) -> MinerResult:
        """A signed POST whose success body is audio."""
        return await self.request(endpoint, hotkey, "POST", path, body, content_type=content_type,
                                  timeout_s=timeout_s, max_bytes=max_bytes)

    async def request(self, endpoint: str | None, hotkey: str, method: str, path: str, body: bytes, *,
                      content_type: str = "application/json", timeout_s: float | None = None,
                      max_bytes: int | None = None, sign: bool = True, expect_audio: bool = True,
                      extra_headers: dict[str, str] | None = None) -> MinerResult:
        deadline = self.timeout_s if timeout_s is None else timeout_s
        cap = self.max_bytes if max_bytes is None else max_bytes
        t0 = time.perf_counter()

        def fail(error: str, message: Any, status: int = 0, **kw: Any) -> MinerResult:
            return MinerResult(endpoint or "", hotkey, status, time.perf_counter() - t0, error=error,
                               message=_one_line(message), **kw)

        if not endpoint:
            return fail(BAD_ENDPOINT, "the miner has no endpoint")
        try:
            url = httpx.URL(base_url(endpoint) + path)
            target = url.raw_path.decode("ascii")
        except (httpx.InvalidURL, ValueError, UnicodeError) as e:
            return fail(BAD_ENDPOINT, f"unusable endpoint {endpoint!r}: {e}")
        headers = {"Content-Type": content_type} if body or method == "POST" else {}
        if extra_headers:
            headers.update(extra_headers)

        async def attempt() -> tuple[int, dict[str, str], bytes]:
            if sign:  # each attempt signed afresh: the miner rejects a nonce it has seen
                headers.update(self._sign(self.wallet, method, target, body, hotkey))
            return await self._exchange(method, url, body, headers, cap)

        async def exchange() -> tuple[int, dict[str, str], bytes]:
            try:
                return await attempt()
            except _NoResponse:
                # Once, on a new connection: a kept-alive connection the miner closed as we reused it (its idle
                # timeout and our next round coincide) fails before the request is read. Same deadline.
                try:
                    return await attempt()
                except _NoResponse as e:
                    if e.__cause__ is None:
                        raise
                    raise e.__cause__ from None  # the httpx error, reported as any other below

        try:
            status, resp_headers, data = await asyncio.wait_for(exchange(), timeout=deadline)
        except asyncio.TimeoutError:
            return fail(TIMEOUT, f"no complete answer within {deadline:g} s")
        except _TooLarge as e:
            return fail(TOO_LARGE, e, status=e.status)
        except httpx.TimeoutException as e:
            return fail(TIMEOUT, f"{type(e).__name__}: {e}")
        except (httpx.ConnectError, httpx.ProxyError, ConnectionError) as e:
            return fail(CONNECT, f"{type(e).__name__}: {e}")
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as e:  # broken HTTP, resets, decoding...
            return fail(PROTOCOL, f"{type(e).__name__}: {e}")
        latency = time.perf_counter() - t0
        if status != 200:
            code, message = _error_body(data)
            return MinerResult(endpoint, hotkey, status, latency, headers=resp_headers, error=HTTP, code=code,
                               message=message)
        if not expect_audio:
            return MinerResult(endpoint, hotkey, status, latency, audio=data, headers=resp_headers)
        meta = AudioMeta.from_headers(resp_headers)
        ctype = resp_headers.get("content-type", "")
        if meta is None or not ctype.startswith("audio/") or not data:
            why = "missing or malformed X-Asn-* headers" if meta is None else f"not audio ({ctype or 'no type'})"
            return MinerResult(endpoint, hotkey, status, latency, audio=data or None, meta=meta, headers=resp_headers,
                               error=PROTOCOL, message=why)
        return MinerResult(endpoint, hotkey, status, latency, audio=data, meta=meta, headers=resp_headers)

    async def _exchange(self, method: str, url: httpx.URL, body: bytes, headers: dict[str, str],
                        cap: int) -> tuple[int, dict[str, str], bytes]:
        req = self._http.build_request(method, url, content=body, headers=headers)
        try:
            resp = await self._http.send(req, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise _NoResponse() from e
        try:
            status = resp.status_code
            limit = cap if status == 200 else min(cap, _ERROR_BODY_CAP)
            declared = resp.headers.get("content-length")
            if status == 200 and declared and declared.isdigit() and int(declared) > cap:
                raise _TooLarge(f"the miner announced {declared} bytes; the cap is {cap}", status)
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > limit:
                    if status != 200:
                        del buf[limit:]
                        break
                    raise _TooLarge(f"the response passed the cap of {cap} bytes", status)
            return status, {k.lower(): v for k, v in resp.headers.items()}, bytes(buf)
        finally:
            await resp.aclose()


def _error_body(data: bytes) -> tuple[str | None, str]:
    try:
        err = protocol.ErrorBody.model_validate_json(data)
        return err.code, _one_line(err.message)
    except ValueError:
        return None, _one_line(data[:200].decode("utf-8", "replace")) if data else ""
