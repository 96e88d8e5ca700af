"""The miner's HTTP edge: a FastAPI app built by `create_app(MinerContext)`.

Request path of POST /v1/tts, /v1/clone, /v1/music and /v1/seen, in order (the first failure answers):
  btauth/1 headers alone: shape, receiver = our hotkey, freshness (no body read yet)     401
  policy for the claimed hotkey: deny/allow lists, registered, permit, stake             403 (503: stale metagraph)
  body size (Content-Length, then the bytes read); bodies in flight within a byte budget  413, 503 + Retry-After
  btauth/1 over the raw body and raw target, shared nonce store (off the event loop)     401
  per-caller rate limit                                                                   429 + Retry-After
  JSON (or multipart) parsing, then field validation                                     400, 422
  service: queue full 429 + Retry-After, bad text/voice/model 422, no cloning or music 501, draining 503
  after a 200: the caller, the prompt's sketch and the answer's fingerprint go to the seen log (miner/seen_log.py)
POST /v1/seen takes the same auth and policy (validators only) and answers from the seen log.
Every error body is JSON {code, message}; a 500 is logged with its request id and is always a miner bug.
A refusal before the body is read closes the connection (the upload is never buffered). A client that hangs up
mid-body (or is cut off by the server's body timeout) is counted in `asn_miner_client_disconnects`, not as an
error. One access log line per request on `audiosubnet.miner.access`; client-supplied values in it are escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from audiosubnet import __version__, protocol
from audiosubnet.config import MineSettings, defaults
from audiosubnet.errors import InputError, NotOffered, Overloaded, Unavailable
from audiosubnet.miner.metrics import MinerMetrics
from audiosubnet.miner.seams import Metrics, NonceStore, Policy, Service
from audiosubnet.miner.seen_log import PromptLog, SeenLog

log = logging.getLogger(__name__)
access_log = logging.getLogger("audiosubnet.miner.access")

_MINE = defaults(MineSettings)  # one source of defaults: the settings section
DEFAULT_MAX_BODY = _MINE["max_body_bytes"]
DEFAULT_MAX_CLONE_BODY = _MINE["max_clone_body_bytes"]
MAX_SEEN_BODY = 4 * 1024
DEFAULT_BODY_BUDGET = _MINE["body_budget_bytes"]  # request bodies buffered at once (per process)
_CLOSE = {"Connection": "close"}


@dataclass
class MinerContext:
    """The HTTP edge's parts, and its view of the `mine` settings section (`config.view(settings.mine,
    MinerContext, ...)` in miner/server.py); its defaults are that section's."""

    hotkey: str  # our own hotkey: the receiver every request must be signed for
    netuid: int
    service: Service  # service.TtsService, or a worker's workers.RemoteService (miner/seams.py)
    policy: Policy  # policy.CallerPolicy, or a worker's workers.HubPolicy
    nonce_store: NonceStore  # shared by every process of this miner
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_clone_body_bytes: int = DEFAULT_MAX_CLONE_BODY
    auth_max_age_s: float = _MINE["auth_max_age_s"]
    auth_skew_s: float = 2.0
    drain_timeout_s: float = _MINE["drain_timeout_s"]
    metrics: Metrics = field(default_factory=MinerMetrics)  # or a worker's workers.RelayMetrics
    verify: Callable[..., Any] | None = None  # default: chain.bittensor.verify_request
    check_headers: Callable[..., Any] | None = None  # default: chain.bittensor.check_auth_headers
    body_budget_bytes: int = DEFAULT_BODY_BUDGET
    body_timeout_s: float = _MINE["body_timeout_s"]  # a body must be read within this (408); waits for budget room
    run_policy_refresh: bool = True
    role: str = "miner"  # in log lines: "miner", or "HTTP worker <pid>" (asn mine --workers N)
    started_at: float = field(default_factory=time.monotonic)
    seen_log: SeenLog = field(default_factory=PromptLog)  # or a worker's workers.RemoteSeenLog

    #: the fields the `mine` section gives (its `seen_log` is a switch, this one the log)
    FROM_SECTION = ("max_body_bytes", "max_clone_body_bytes", "auth_max_age_s", "drain_timeout_s", "body_timeout_s",
                    "body_budget_bytes")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(protocol.error_json(code, message), status_code=status, media_type="application/json",
                    headers=headers)


def _target(request: Request) -> str:
    """The request target exactly as received: raw path (+ '?' + raw query)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    qs = request.scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{qs.decode('latin-1')}" if qs else target


def _declared_length(request: Request, cap: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit() and len(declared) <= 18):
        raise ApiError(400, protocol.E_MALFORMED, "invalid Content-Length", _CLOSE)
    n = int(declared)
    if n > cap:
        raise ApiError(413, protocol.E_TOO_LARGE, f"body is {n} bytes; the limit is {cap}", _CLOSE)
    return n


async def _read_body(request: Request, cap: int, declared: int | None = None) -> bytes:
    if declared is not None:  # one buffer of the announced size: no reallocation while it fills
        buf, n = bytearray(declared), 0
        async for chunk in request.stream():
            if n + len(chunk) > declared:
                raise ApiError(400, protocol.E_MALFORMED, "body is longer than its Content-Length", _CLOSE)
            buf[n:n + len(chunk)] = chunk
            n += len(chunk)
        del buf[n:]
        return bytes(buf)
    buf = bytearray()
    async for chunk in request.stream():
        if len(buf) + len(chunk) > cap:
            raise ApiError(413, protocol.E_TOO_LARGE, f"body is over the limit of {cap} bytes", _CLOSE)
        buf += chunk
    return bytes(buf)


class BodyBudget:
    """Bytes of request bodies buffered at once: a request reserves its Content-Length (else the cap) before
    reading, waits up to `timeout` for room (its client is held by TCP back-pressure meanwhile), else 503."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, n: int, timeout: float) -> AsyncIterator[None]:
        n = min(n, self.total)
        async with self._freed:
            try:
                await asyncio.wait_for(self._freed.wait_for(lambda: self.used + n <= self.total), timeout)
            except asyncio.TimeoutError:
                raise ApiError(503, protocol.E_UNAVAILABLE, "too many uploads in flight; retry shortly",
                               {"Retry-After": "1", **_CLOSE}) from None
            self.used += n
        try:
            yield
        finally:
            async with self._freed:
                self.used -= n
                self._freed.notify_all()


def clean(value: object, limit: int = 80) -> str:
    """A client-supplied value as it may appear in a log line: control characters escaped, at most `limit`."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@contextlib.asynccontextmanager
async def serving(ctx: MinerContext) -> AsyncIterator[None]:
    """The service started and the metagraph refreshed while inside; on the way out: stop refreshing, drain the
    admitted requests, stop. The app's lifespan, and the main process of `asn mine --workers N`."""
    if not ctx.service.started:
        await ctx.service.start()
    refresher = asyncio.create_task(ctx.policy.run()) if ctx.run_policy_refresh else None
    try:
        yield
    finally:
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await refresher
        drained = await ctx.service.drain(ctx.drain_timeout_s)
        await ctx.service.stop(timeout=0 if not drained else ctx.drain_timeout_s)
        log.info("%s stopped (%s)", ctx.role, "drained" if drained else "drain timed out")


def create_app(ctx: MinerContext) -> FastAPI:
    if ctx.verify is None:
        from audiosubnet.chain.bittensor import verify_request

        ctx.verify = verify_request
    if ctx.check_headers is None:
        from audiosubnet.chain.bittensor import check_auth_headers

        ctx.check_headers = check_auth_headers
    verify: Callable[..., Any] = ctx.verify
    check_headers: Callable[..., Any] = ctx.check_headers
    budget = BodyBudget(ctx.body_budget_bytes)
    metrics = ctx.metrics
    metrics.watch_metagraph(lambda: ctx.policy.snapshot_age_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serving(ctx):
            yield

    app = FastAPI(title="asn miner", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.ctx = ctx
    records: set[asyncio.Task[None]] = set()  # seen-log records in flight (kept referenced until done)

    def remember(caller: str, endpoint: str, text: str, audio: bytes) -> None:
        task = asyncio.create_task(ctx.seen_log.record(caller, endpoint, text, audio))
        records.add(task)
        task.add_done_callback(records.discard)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: protocol.E_NOT_FOUND, 405: protocol.E_METHOD}.get(exc.status_code, protocol.E_MALFORMED)
        return _error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:  # pragma: no cover - a bug by definition
        rid = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", rid, request.method, request.url.path, exc_info=exc)
        return _error(500, protocol.E_INTERNAL, f"internal error (request id {rid})")

    def _auth_reason(e: Exception, rid: str) -> str:
        reason = getattr(e, "reason", None)
        if reason is None:  # not an AuthFailure: a bug in verification, still never trust the caller
            log.exception("auth verification crashed (request %s)", rid)
            reason = "malformed"
        return reason

    def _admit(hotkey: str) -> None:
        decision = ctx.policy.admit(hotkey)
        if not decision.allowed:
            metrics.rejection(decision.reason)
            if decision.reason == "stale_metagraph":
                raise ApiError(503, protocol.E_UNAVAILABLE, decision.message, {"Retry-After": "30", **_CLOSE})
            raise ApiError(403, protocol.E_FORBIDDEN, decision.message, _CLOSE)

    async def authenticate(request: Request, cap: int, rid: str) -> tuple[str, bytes]:
        """(caller hotkey, body): everything the btauth/1 headers alone can refuse, before a byte of the body is
        read; the body within `cap` and the per-process budget; then the signature over it and the policy again."""
        try:
            claimed = check_headers(request.headers, ctx.hotkey, max_age=ctx.auth_max_age_s,
                                        allowed_skew=ctx.auth_skew_s)
        except Exception as e:
            reason = _auth_reason(e, rid)
            metrics.auth_failure(reason)
            raise ApiError(401, protocol.E_AUTH, f"btauth/1 {reason}: {getattr(e, 'message', e)}",
                           _CLOSE) from None
        _admit(claimed)
        declared = _declared_length(request, cap)
        async with budget.reserve(cap if declared is None else declared, ctx.body_timeout_s):
            try:  # the server's connection deadlines close slow uploads; this holds under any ASGI server
                body = await asyncio.wait_for(_read_body(request, cap, declared), ctx.body_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(408, protocol.E_MALFORMED, f"the body did not arrive within "
                                                          f"{ctx.body_timeout_s:g} s", _CLOSE) from None
        try:
            who = await asyncio.to_thread(verify, request.headers, body, request.method, _target(request),
                                          ctx.hotkey, nonce_store=ctx.nonce_store, max_age=ctx.auth_max_age_s,
                                          allowed_skew=ctx.auth_skew_s)
        except Unavailable:
            raise
        except Exception as e:
            reason = _auth_reason(e, rid)
            metrics.auth_failure(reason)
            raise ApiError(401, protocol.E_AUTH, f"btauth/1 {reason}: {getattr(e, 'message', e)}") from None
        _admit(who.hotkey)  # again: the snapshot may have changed while the body arrived
        return who.hotkey, body

    async def handle(request: Request, endpoint: str) -> Response:
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:12]
        caller, model, chars, audio_s, status = "-", "-", 0, 0.0, 500
        disconnected = False
        try:
            cap = ctx.max_clone_body_bytes if endpoint == "clone" else ctx.max_body_bytes
            caller, body = await authenticate(request, cap, rid)
            limited = await ctx.policy.take(caller)
            if not limited.allowed:
                metrics.rejection(limited.reason)
                raise ApiError(429, protocol.E_RATE_LIMITED, limited.message,
                               {"Retry-After": str(int(limited.retry_after))})
            ctype = request.headers.get("content-type")
            limit = ctx.service.config.max_text_chars
            try:
                if endpoint == "music":
                    mreq = protocol.parse_music(body, ctype)
                    req: protocol.TtsRequest = protocol.TtsRequest.model_construct(
                        text=mreq.prompt, model=mreq.model)  # for the log line
                elif endpoint == "clone":
                    creq = protocol.parse_clone(body, ctype, max_text_chars=limit)
                    req = creq
                else:
                    req = protocol.parse_tts(body, ctype, max_text_chars=limit)
            except protocol.BodyError as e:
                raise ApiError(e.status, e.code, e.message) from None
            chars = len(req.text)
            model = req.model or ctx.service.default_model
            if endpoint == "music":
                out = await ctx.service.music(mreq.prompt, duration_s=mreq.duration_s, model=mreq.model,
                                              seed=mreq.seed, fmt=mreq.format, sample_rate=mreq.sample_rate)
            elif endpoint == "clone":
                out = await ctx.service.clone(req.text, creq.reference_audio, reference_text=creq.reference_text,
                                              model=req.model, seed=req.seed, fmt=req.format,
                                              sample_rate=req.sample_rate)
            else:
                out = await ctx.service.synthesize(req.text, model=req.model, voice=req.voice, seed=req.seed,
                                                   fmt=req.format, sample_rate=req.sample_rate)
            model, audio_s, status = out.model_id, out.duration_s, 200
            remember(caller, endpoint, req.text, out.data)
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            meta = protocol.AudioMeta(model=out.model_id, sample_rate=out.sample_rate, duration_s=out.duration_s,
                                      elapsed_ms=elapsed_ms, format=out.fmt, voice=out.voice, request_id=rid)
            return Response(out.data, media_type=protocol.MEDIA_TYPES[out.fmt], headers=meta.headers())
        except ApiError as e:
            status = e.status
            return _error(e.status, e.code, e.message, e.headers)
        except ClientDisconnect:  # hung up mid-body, or cut off by the body timeout: nobody to answer
            status, disconnected = 499, True
            return Response(status_code=499)
        except InputError as e:  # includes AudioDecodeError
            status = 422
            return _error(422, protocol.E_INVALID, str(e))
        except Overloaded as e:
            status = 429
            return _error(429, protocol.E_OVERLOADED, str(e), {"Retry-After": str(int(e.retry_after))})
        except NotOffered as e:
            status = 501
            return _error(501, protocol.E_NOT_IMPLEMENTED, str(e))
        except Unavailable as e:
            status = 503
            return _error(503, protocol.E_UNAVAILABLE, str(e), {"Retry-After": "5"})
        except Exception:
            status = 500
            log.exception("internal error %s on %s (caller %s)", rid, endpoint, caller)
            return _error(500, protocol.E_INTERNAL, f"internal error (request id {rid})")
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            if disconnected:
                metrics.disconnect(endpoint)
            else:
                metrics.request(endpoint, status, ms / 1000.0, model, audio_s, chars)
            access_log.info("%s caller=%s model=%s chars=%d audio_s=%.2f ms=%.0f status=%d rid=%s", endpoint,
                            clean(caller), clean(model), chars, audio_s, ms, status, rid)

    @app.post(protocol.PATH_TTS)
    async def tts(request: Request) -> Response:
        return await handle(request, "tts")

    @app.post(protocol.PATH_CLONE)
    async def clone(request: Request) -> Response:
        return await handle(request, "clone")

    @app.post(protocol.PATH_MUSIC)
    async def music(request: Request) -> Response:
        return await handle(request, "music")

    @app.post(protocol.PATH_SEEN)
    async def seen(request: Request) -> Response:
        t0 = time.perf_counter()
        caller, status, n = "-", 500, 0
        try:
            caller, body = await authenticate(request, MAX_SEEN_BODY, uuid.uuid4().hex[:12])
            try:
                req = protocol.parse_seen(body, request.headers.get("content-type"))
            except protocol.BodyError as e:
                raise ApiError(e.status, e.code, e.message) from None
            entries = await ctx.seen_log.seen(req, caller)
            n, status = len(entries), 200
            return Response(protocol.SeenResponse(hotkey=ctx.hotkey, entries=entries).model_dump_json(),
                            media_type="application/json")
        except ApiError as e:
            status = e.status
            return _error(e.status, e.code, e.message, e.headers)
        except ClientDisconnect:
            status = 499
            return Response(status_code=499)
        except Unavailable as e:
            status = 503
            return _error(503, protocol.E_UNAVAILABLE, str(e), {"Retry-After": "5"})
        finally:
            access_log.info("seen caller=%s entries=%d ms=%.0f status=%d", clean(caller), n,
                            (time.perf_counter() - t0) * 1000.0, status)

    @app.get(protocol.PATH_INFO)
    async def info() -> Response:
        svc = ctx.service
        try:
            models = svc.models_info()
            default = svc.default_model
        except Unavailable as e:
            return _error(503, protocol.E_UNAVAILABLE, str(e))
        limits = protocol.Limits(max_text_chars=svc.config.max_text_chars, max_body_bytes=ctx.max_body_bytes,
                                 max_batch=max((m.max_batch for m in models), default=1),
                                 queue_size=svc.config.queue_size,
                                 rate_limit_per_min=ctx.policy.config.rate_limit_per_min)
        body = protocol.InfoResponse(hotkey=ctx.hotkey, netuid=ctx.netuid, version=__version__,
                                     engines=sorted({m.engine for m in models}), models=models,
                                     default_model=default, clone=svc.can_clone, limits=limits,
                                     music=getattr(svc, "can_music", False))
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get(protocol.PATH_HEALTH)
    async def health() -> Response:
        svc = ctx.service
        state = svc.state
        body = protocol.HealthResponse(status=state, uptime_s=time.monotonic() - ctx.started_at,
                                       queue_depth=svc.queue_depth, in_flight=svc.in_flight)
        return Response(body.model_dump_json(), status_code=200 if state == "ok" else 503,
                        media_type="application/json")

    @app.get(protocol.PATH_METRICS)
    async def prometheus() -> Response:
        from audiosubnet.miner.metrics import CONTENT_TYPE

        return Response(await metrics.exposition(), media_type=CONTENT_TYPE)

    return app
