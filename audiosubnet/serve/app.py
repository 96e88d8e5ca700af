"""The HTTP edge of `asn serve`: a FastAPI app over the shared batching TtsService, OpenAI-compatible.

    POST /v1/audio/speech            text -> audio (mp3 opus aac flac wav pcm), streamed sentence by sentence
    GET  /v1/models[/{id}]           served models (and OpenAI's tts-1, tts-1-hd, gpt-4o-mini-tts = the default)
    GET  /v1/audio/voices            every served model's voices, OpenAI's voice names, saved voices
    POST /v1/audio/voices            save a voice (reference clip + its transcript) -> {"id": "voice_..."}
    GET/DELETE /v1/audio/voices/{id}
    GET  /health  /metrics  /        state, Prometheus, the page to try it

Every /v1 request: API key (when keys are set) 401, per-caller rate limit 429, body cap 413, then parsing and
validation 400. Errors are OpenAI's JSON; a 500 is logged with a request id and is always a server bug.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.parser
import email.policy
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audiosubnet import __version__
from audiosubnet.errors import AsnError, AudioDecodeError, InputError, NotOffered, Overloaded, Unavailable
from audiosubnet.serve import encode as enc
from audiosubnet.serve import speech
from audiosubnet.serve.metrics import CONTENT_TYPE, MetricsSink, ServeMetrics
from audiosubnet.serve.openai_api import (
    OPENAI_MODELS,
    OPENAI_VOICES,
    ApiError,
    error_body,
    model_object,
    parse_speech,
)
from audiosubnet.serve.security import KeyCheck, Limiter, RateLimiter, retry_after
from audiosubnet.serve.voices import VoiceNotFound, VoiceStore
from audiosubnet.service.batching import TtsService

log = logging.getLogger(__name__)
access_log = logging.getLogger("audiosubnet.serve.access")


@dataclass
class ServeContext:
    service: TtsService
    voices: VoiceStore | None = None
    clone_model: str | None = None  # canonical id of a served cloning model (saved voices), or None
    api_keys: tuple[str, ...] = ()
    rate_limit_per_min: float = 600.0
    max_input_chars: int = 4096
    max_body_bytes: int = 64 * 1024
    max_voice_bytes: int = 10 * 2**20
    voice_map: dict[str, str] = field(default_factory=dict)
    request_timeout_s: float = 120.0
    drain_timeout_s: float = 30.0
    metrics: MetricsSink = field(default_factory=ServeMetrics)
    limiter: Limiter | None = None  # None: a RateLimiter of rate_limit_per_min in this process
    started_at: float = field(default_factory=time.monotonic)
    created: int = field(default_factory=lambda: int(time.time()))


def _error(e: ApiError) -> Response:
    return Response(e.body(), status_code=e.status, media_type="application/json", headers=e.headers)


async def _read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length") from None
        if n > cap:
            raise ApiError(413, f"the body is {n} bytes; the limit is {cap}", code="request_too_large")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise ApiError(413, f"the body is over the limit of {cap} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _map_error(e: Exception, rid: str) -> ApiError:
    """Service and library exceptions -> OpenAI errors (a client's mistake is never a 500)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, VoiceNotFound):
        return ApiError(404, str(e), param="voice", code="voice_not_found")
    if isinstance(e, (InputError, AudioDecodeError)):
        return ApiError(400, str(e), code="invalid_value")
    if isinstance(e, Overloaded):
        return ApiError(429, str(e), type="server_error", code="queue_full",
                        headers={"Retry-After": retry_after(e.retry_after)})
    if isinstance(e, NotOffered):
        return ApiError(400, str(e), code="not_offered")
    if isinstance(e, Unavailable):
        return ApiError(503, str(e), type="server_error", code="unavailable", headers={"Retry-After": "5"})
    if isinstance(e, AsnError):  # the server's own set-up (a missing package, a model that will not load)
        log.error("request %s failed: %s", rid, e)
        hint = f" ({e.hint})" if e.hint else ""
        return ApiError(500, f"{e}{hint} (request id {rid})", type="server_error", code="server_error")
    log.error("internal error %s", rid, exc_info=e)
    return ApiError(500, f"internal error (request id {rid})", type="server_error", code="internal_error")


@contextlib.asynccontextmanager
async def serving(ctx: ServeContext) -> AsyncIterator[None]:
    if not ctx.service.started:
        await ctx.service.start()
    try:
        yield
    finally:
        drained = await ctx.service.drain(ctx.drain_timeout_s)
        await ctx.service.stop(timeout=0 if not drained else ctx.drain_timeout_s)


def create_app(ctx: ServeContext) -> FastAPI:
    keys = KeyCheck(ctx.api_keys)
    limiter = ctx.limiter or RateLimiter(ctx.rate_limit_per_min)
    metrics = ctx.metrics
    svc = ctx.service
    pace = speech.FirstChunkPace()  # how long a streamed first piece may be, per model (learnt in this process)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serving(ctx):
            yield

    app = FastAPI(title="asn serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.ctx = ctx

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        return Response(error_body(str(exc.detail), code=code), status_code=exc.status_code,
                        media_type="application/json", headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:  # pragma: no cover - a bug by definition
        return _error(_map_error(exc, uuid.uuid4().hex[:12]))

    async def admit(request: Request, limited: bool = True) -> str:
        """The caller's label, after the key check and the rate limit (raises ApiError 401/429)."""
        if keys.required:
            caller = keys.caller(request.headers.get("authorization"))
            if caller is None:
                metrics.auth_failure()
                raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        else:
            caller = "ip:" + (request.client.host if request.client else "-")
        wait = await limiter.wait(caller) if limited else 0.0
        if wait > 0:
            metrics.rate_limit()
            raise ApiError(429, "Rate limit reached for requests.", type="requests", code="rate_limit_exceeded",
                           headers={"Retry-After": retry_after(wait)})
        return caller

    async def guarded(endpoint: str, request: Request,
                      handler: Callable[[Request, str, str], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:12]
        status = 500
        try:
            caller = await admit(request, limited=endpoint != "metrics")  # a scraper is not rate limited
            resp = await handler(request, caller, rid)
            status = resp.status_code
            return resp
        except Exception as e:
            err = _map_error(e, rid)
            status = err.status
            return _error(err)
        finally:
            if endpoint != "speech" or status != 200:  # a 200 speech stream is counted when it ends
                metrics.request(endpoint, status, time.perf_counter() - t0)
                access_log.info("%s %s status=%d ms=%.0f rid=%s pid=%d", request.method, request.url.path, status,
                                (time.perf_counter() - t0) * 1000.0, rid, os.getpid())

    # ---- speech -----------------------------------------------------------------------------------
    async def _speech(request: Request, caller: str, rid: str) -> Response:
        t0 = time.perf_counter()
        body = await _read_body(request, ctx.max_body_bytes)
        req = parse_speech(body, request.headers.get("content-type"), ctx.max_input_chars)
        p = speech.plan(req, svc, voice_map=ctx.voice_map, voices=ctx.voices, clone_model=ctx.clone_model,
                        pace=pace)
        out = speech.Outcome()
        head, rest, rate = await speech.produce(svc, p, time.monotonic() + ctx.request_timeout_s, out, pace)
        first_s = time.perf_counter() - t0
        metrics.first_audio(first_s)
        headers = {"x-request-id": rid, "x-asn-model": out.model_id, "x-asn-sample-rate": str(rate),
                   "x-asn-first-audio-ms": f"{first_s * 1000:.1f}", "x-asn-first-engine-ms":
                   f"{out.first_engine_ms:.1f}", "x-asn-first-queue-ms": f"{out.first_queue_ms:.1f}"}
        media = "text/event-stream" if p.sse else enc.MEDIA_TYPES[p.fmt]
        chars = len(req.input)

        def done() -> None:
            seconds = time.perf_counter() - t0
            metrics.request("speech", out.status, seconds)
            if out.status == 200:
                metrics.served(out.model_id, out.audio_s, chars)
            access_log.info("speech caller=%s model=%s voice=%s fmt=%s%s chars=%d chunks=%d audio_s=%.2f "
                            "first_ms=%.0f ms=%.0f status=%d rid=%s pid=%d", caller, out.model_id, p.voice_label,
                            p.fmt, "/sse" if p.sse else "", chars, len(p.chunks), out.audio_s, first_s * 1000,
                            seconds * 1000, out.status, rid, os.getpid())

        if rest is None:
            done()
            return Response(head, media_type=media, headers=headers)

        async def stream() -> AsyncIterator[bytes]:
            try:
                if head:
                    yield head
                async for part in rest:
                    yield part
            finally:
                done()

        if p.sse:
            headers["Cache-Control"] = "no-cache"
        return StreamingResponse(stream(), media_type=media, headers=headers)

    @app.post("/v1/audio/speech")
    async def audio_speech(request: Request) -> Response:
        return await guarded("speech", request, _speech)

    # ---- models -----------------------------------------------------------------------------------
    def _models() -> list[dict[str, Any]]:
        served = [{**model_object(m.id, ctx.created, m.engine),
                   "asn": {"tts": m.tts, "clone": m.clone, "voices": m.voices, "default_voice": m.default_voice,
                           "sample_rate": m.sample_rate, "max_batch": m.max_batch}} for m in svc.models_info()]
        return served + [model_object(name, ctx.created, "asn (the default model)") for name in OPENAI_MODELS]

    async def _list_models(request: Request, caller: str, rid: str) -> Response:
        return _json({"object": "list", "data": _models()})

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        return await guarded("models", request, _list_models)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> Response:
        async def one(request: Request, caller: str, rid: str) -> Response:
            for m in _models():
                if m["id"] == model_id:
                    return _json(m)
            raise ApiError(404, f"The model '{model_id[:80]}' does not exist", param="model",
                           code="model_not_found")

        return await guarded("models", request, one)

    # ---- voices -----------------------------------------------------------------------------------
    async def _list_voices(request: Request, caller: str, rid: str) -> Response:
        data: list[dict[str, Any]] = []
        default = svc.default_model
        for m in svc.models_info():
            if m.tts:
                data += [{"id": v, "object": "audio.voice", "type": "builtin", "model": m.id,
                          "default": v == m.default_voice} for v in m.voices]
        for name in OPENAI_VOICES:
            data.append({"id": name, "object": "audio.voice", "type": "openai", "model": default,
                         "maps_to": ctx.voice_map.get(name) or "(default voice)"})
        if ctx.voices is not None:
            data += [{**v.public(), "model": ctx.clone_model} for v in ctx.voices.list()]
        return _json({"object": "list", "data": data, "voices": [d["id"] for d in data]})

    @app.get("/v1/audio/voices")
    async def list_voices(request: Request) -> Response:
        return await guarded("voices", request, _list_voices)

    def _store() -> VoiceStore:
        if ctx.voices is None:
            raise ApiError(400, "saved voices are not enabled on this server (no cloning model)",
                           code="cloning_unavailable")
        return ctx.voices

    async def _add_voice(request: Request, caller: str, rid: str) -> Response:
        store = _store()
        body = await _read_body(request, ctx.max_voice_bytes)
        fields = _voice_fields(body, request.headers.get("content-type"))
        audio = next((fields[k] for k in ("audio_sample", "file", "audio") if isinstance(fields.get(k), bytes)), None)
        if not audio:
            raise ApiError(400, "missing the reference clip: a file part 'audio_sample' (or 'file') in multipart, "
                                "or base64 'audio' in JSON", param="audio_sample", code="missing_required_parameter")
        text = fields.get("text") or fields.get("reference_text")
        name = fields.get("name")
        v = await asyncio.to_thread(store.add, audio, text=text if isinstance(text, str) else None,
                                    name=name if isinstance(name, str) else None)
        log.info("saved voice %s (%.1f s) for %s", v.id, v.duration_s, caller)
        return _json(v.public(), status=201)

    @app.post("/v1/audio/voices")
    async def add_voice(request: Request) -> Response:
        return await guarded("voices", request, _add_voice)

    @app.get("/v1/audio/voices/{voice_id}")
    async def get_voice(voice_id: str, request: Request) -> Response:
        async def one(request: Request, caller: str, rid: str) -> Response:
            return _json(_store().get(voice_id).public())

        return await guarded("voices", request, one)

    @app.delete("/v1/audio/voices/{voice_id}")
    async def delete_voice(voice_id: str, request: Request) -> Response:
        async def one(request: Request, caller: str, rid: str) -> Response:
            if not _store().delete(voice_id):
                raise VoiceNotFound(f"no saved voice '{voice_id[:80]}'")
            return _json({"id": voice_id, "object": "audio.voice.deleted", "deleted": True})

        return await guarded("voices", request, one)

    # ---- operations -------------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> Response:
        state = svc.state
        loaded = svc.loaded_models() if svc.started else []
        metrics.loaded(len(loaded))
        body = {"status": state, "version": __version__, "uptime_s": round(time.monotonic() - ctx.started_at, 1),
                "queue_depth": svc.queue_depth, "in_flight": svc.in_flight, "models_loaded": loaded}
        return _json(body, status=200 if state == "ok" else 503)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        async def one(request: Request, caller: str, rid: str) -> Response:
            metrics.loaded(len(svc.loaded_models()))
            return Response(await metrics.exposition(), media_type=CONTENT_TYPE)

        return await guarded("metrics", request, one)

    @app.get("/")
    async def page() -> Response:
        html = resources.files("audiosubnet").joinpath("data/serve/index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
                                                            "style-src 'self' 'unsafe-inline'; "
                                                            "script-src 'self' 'unsafe-inline'"})

    return app


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status_code=status, media_type="application/json")


def _voice_fields(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Fields of a voice upload: JSON {audio: base64, text, name} or multipart/form-data (file part + fields)."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt in ("", "application/json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        audio = data.get("audio")
        if isinstance(audio, str):
            try:
                data["audio"] = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "'audio' is not valid base64", param="audio", code="invalid_value") from None
        elif audio is not None:
            raise ApiError(400, "'audio' must be a base64 string (URLs are not fetched)", param="audio",
                           code="invalid_value")
        return data
    if mt != "multipart/form-data" or "boundary=" not in (content_type or ""):
        raise ApiError(400, f"content type '{mt}' is neither application/json nor multipart/form-data",
                       code="invalid_content_type")
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + (content_type or "").encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    except Exception:  # the stdlib parser is lenient; anything it raises is a malformed body
        raise ApiError(400, "unreadable multipart body", code="invalid_multipart") from None
    if not msg.is_multipart():
        raise ApiError(400, "unreadable multipart body", code="invalid_multipart")
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        raw = part.get_payload(decode=True)  # bytes (None for a multipart part)
        payload = raw if isinstance(raw, bytes) else b""
        if part.get_filename() is not None or name in ("file", "audio_sample"):
            out[name] = payload
            continue
        try:
            out[name] = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, f"form field '{name}' is not UTF-8", param=name, code="invalid_value") from None
    return out
