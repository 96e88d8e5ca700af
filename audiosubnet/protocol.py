"""The wire protocol between validators and miners, version 1 (shared by both sides).

Transport: plain HTTP(S) signed with btauth/1 (`bittensor.http_auth`): the validator signs the method, the
raw request target (path + query as sent), the sha256 of the raw body, a nanosecond nonce and the miner's
hotkey; the miner verifies all of it *before* parsing the body. Retries are new requests.

Endpoints
    POST /v1/tts     JSON `TtsRequest`                        -> audio bytes (WAV/FLAC) + `X-Asn-*` headers
    POST /v1/clone   JSON `CloneRequest` (base64 reference) or
                     multipart/form-data (fields of `CloneRequest`, file part `reference_audio`)
                                                              -> audio bytes + headers (501 when not offered)
    POST /v1/seen    JSON `SeenRequest` -> `SeenResponse`: the prompts this miner was sent by other callers in the
                     last seconds (text sketches), or, by entry id, the fingerprints of the audio it answered
                     with: the evidence validators use to catch miners that relay prompts (validators only)
    POST /v1/music   JSON `MusicRequest` {prompt <= 256 chars, duration_s <= 30, seed?, format}
                                                              -> audio bytes + headers (501 when not offered)
    GET  /v1/info    `InfoResponse` (protocol version, engines, models, voices, limits); no signature needed
    GET  /health     `HealthResponse`; no signature needed
    GET  /metrics    Prometheus text format

Every error is JSON `ErrorBody` {code, message} with one of these statuses: 400 malformed, 401 auth,
403 policy, 404/405 route, 413 too large, 422 invalid field, 429 overload or rate limit (with Retry-After),
501 not offered, 503 starting or draining. A 500 means a bug in the miner, never bad client input.

Audio always travels as bytes in the body, never as JSON lists of floats.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

PROTOCOL_VERSION = "1"

PATH_TTS = "/v1/tts"
PATH_CLONE = "/v1/clone"
PATH_MUSIC = "/v1/music"
PATH_INFO = "/v1/info"
PATH_SEEN = "/v1/seen"
PATH_HEALTH = "/health"
PATH_METRICS = "/metrics"

DEFAULT_MAX_TEXT_CHARS = 512
HARD_MAX_TEXT_CHARS = 10_000  # no setting may raise the limit past this
MAX_REFERENCE_SECONDS = 30.0
MAX_MUSIC_PROMPT_CHARS = 256
MIN_MUSIC_SECONDS, MAX_MUSIC_SECONDS = 0.5, 30.0
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
AUDIO_FORMATS = ("wav", "flac")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}

# Response headers (lower-case on the wire is fine: HTTP headers are case-insensitive).
H_PROTOCOL = "X-Asn-Protocol"
H_MODEL = "X-Asn-Model"
H_VOICE = "X-Asn-Voice"
H_SAMPLE_RATE = "X-Asn-Sample-Rate"
H_DURATION = "X-Asn-Duration"  # seconds, decimal
H_ELAPSED_MS = "X-Asn-Elapsed-Ms"  # miner-side time from auth to encoded audio
H_REQUEST_ID = "X-Asn-Request-Id"
H_FORMAT = "X-Asn-Format"

# Error codes (ErrorBody.code)
E_MALFORMED = "malformed"  # 400: not JSON, wrong content type, broken multipart or base64
E_AUTH = "unauthorized"  # 401: btauth/1 failed (missing, forged, stale, replayed, wrong receiver)
E_FORBIDDEN = "forbidden"  # 403: authenticated, but not allowed (unregistered, no permit, low stake, denied)
E_NOT_FOUND = "not_found"  # 404
E_METHOD = "method_not_allowed"  # 405
E_TOO_LARGE = "too_large"  # 413: body over the cap
E_INVALID = "invalid"  # 422: a field out of range, unknown model/voice, text too long, bad reference audio
E_RATE_LIMITED = "rate_limited"  # 429: this caller is over its request rate
E_OVERLOADED = "overloaded"  # 429: the queue is full
E_NOT_IMPLEMENTED = "not_implemented"  # 501: e.g. /v1/clone on a miner without a cloning engine
E_UNAVAILABLE = "unavailable"  # 503: starting up or draining
E_INTERNAL = "internal"  # 500: a bug in the miner


class ErrorBody(BaseModel):
    code: str
    message: str


class _Strict(BaseModel):
    # Unknown fields are ignored, so a newer validator can add optional fields without breaking older miners.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _max_chars(info: ValidationInfo) -> int:
    ctx = info.context or {}
    return int(ctx.get("max_text_chars", DEFAULT_MAX_TEXT_CHARS))


class TtsRequest(_Strict):
    """POST /v1/tts. `text` length is checked against the miner's limit (validation context
    `max_text_chars`, default 512)."""

    text: str = Field(min_length=1, max_length=HARD_MAX_TEXT_CHARS)
    model: str | None = Field(None, min_length=1, max_length=256, description="model id; default: the miner's")
    voice: str | None = Field(None, min_length=1, max_length=256)
    format: Literal["wav", "flac"] = "wav"
    sample_rate: int | None = Field(None, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE,
                                    description="resample the output to this rate; default: the model's")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str, info: ValidationInfo) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        limit = _max_chars(info)
        if len(v) > limit:
            raise ValueError(f"text is {len(v)} characters; this miner takes at most {limit}")
        if "\x00" in v:
            raise ValueError("text contains a NUL character")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (lone surrogate)") from None
        return v


class CloneRequest(TtsRequest):
    """POST /v1/clone: speak `text` in the voice of `reference_audio` (WAV/FLAC/OGG/MP3, at most 30 s).

    As JSON, `reference_audio` is base64 (standard alphabet). As multipart/form-data, the reference is
    the file part `reference_audio` and the other fields are form fields.
    """

    reference_audio: bytes = Field(min_length=1, description="encoded audio; base64 in JSON")
    reference_text: str | None = Field(None, max_length=HARD_MAX_TEXT_CHARS,
                                       description="what the reference says, if known")

    @field_validator("reference_audio", mode="before")
    @classmethod
    def _b64(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return base64.b64decode(v.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raise ValueError("reference_audio is not valid base64") from None
        return v


MAX_SEEN_WINDOW_S = 300.0
MAX_SEEN_ENTRIES = 1024
MAX_SEEN_IDS = 64


class SeenRequest(_Strict):
    """POST /v1/seen. Without `ids`: the sketches of the prompts other callers sent in the last `window_s`
    seconds (newest first, at most `limit`). With `ids`: those entries with the fingerprint of the audio answered."""

    window_s: float = Field(60.0, gt=0, le=MAX_SEEN_WINDOW_S)
    limit: int = Field(256, ge=1, le=MAX_SEEN_ENTRIES)
    ids: list[int] | None = Field(None, max_length=MAX_SEEN_IDS)


class SeenEntry(BaseModel):
    id: int
    caller: str  # the hotkey that sent the request
    age_s: float  # seconds before the answer to /v1/seen
    endpoint: str  # tts | clone
    sketch: str  # textsketch.encode(...) of the prompt
    fingerprint: str | None = None  # base64 fingerprint of the answer's audio (only when asked for by id)
    fingerprint_version: int | None = None


class SeenResponse(BaseModel):
    hotkey: str
    entries: list[SeenEntry]


class MusicRequest(_Strict):
    """POST /v1/music: `duration_s` seconds of music for `prompt` (text-to-music models only)."""

    prompt: str = Field(min_length=1, max_length=MAX_MUSIC_PROMPT_CHARS)
    duration_s: float = Field(10.0, ge=MIN_MUSIC_SECONDS, le=MAX_MUSIC_SECONDS, allow_inf_nan=False)
    model: str | None = Field(None, min_length=1, max_length=256, description="model id; default: the miner's")
    format: Literal["wav", "flac"] = "wav"
    sample_rate: int | None = Field(None, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt is blank")
        if "\x00" in v:
            raise ValueError("prompt contains a NUL character")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("prompt is not valid Unicode (lone surrogate)") from None
        return v


class ModelInfo(BaseModel):
    id: str
    engine: str
    sample_rate: int
    voices: list[str] = []
    default_voice: str | None = None
    tts: bool = True
    clone: bool = False
    batching: bool = False
    max_batch: int = 1
    languages: list[str] = []
    music: bool = False
    max_duration_s: float = 0.0


class Limits(BaseModel):
    max_text_chars: int
    max_body_bytes: int
    max_reference_seconds: float = MAX_REFERENCE_SECONDS
    formats: list[str] = list(AUDIO_FORMATS)
    min_sample_rate: int = MIN_SAMPLE_RATE
    max_sample_rate: int = MAX_SAMPLE_RATE
    max_batch: int = 1
    queue_size: int = 0
    rate_limit_per_min: float = 0.0


class InfoResponse(BaseModel):
    protocol_version: str = PROTOCOL_VERSION
    hotkey: str
    netuid: int
    version: str
    engines: list[str]
    models: list[ModelInfo]
    default_model: str
    clone: bool
    limits: Limits
    music: bool = False  # a model serves POST /v1/music


#: A service's lifecycle state, as /health reports it.
ServiceState = Literal["ok", "starting", "draining"]


class HealthResponse(BaseModel):
    status: ServiceState
    protocol_version: str = PROTOCOL_VERSION
    uptime_s: float
    queue_depth: int
    in_flight: int


# ---- audio response metadata -------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioMeta:
    model: str
    sample_rate: int
    duration_s: float
    elapsed_ms: float
    protocol_version: str = PROTOCOL_VERSION
    format: str = "wav"
    voice: str | None = None
    request_id: str | None = None

    def headers(self) -> dict[str, str]:
        h = {H_PROTOCOL: self.protocol_version, H_MODEL: self.model, H_SAMPLE_RATE: str(self.sample_rate),
             H_DURATION: f"{self.duration_s:.4f}", H_ELAPSED_MS: f"{self.elapsed_ms:.1f}", H_FORMAT: self.format}
        if self.voice:
            h[H_VOICE] = _header_safe(self.voice)
        if self.request_id:
            h[H_REQUEST_ID] = self.request_id
        return h

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> AudioMeta | None:
        """Parse the headers of an audio response; None when they are missing or malformed."""
        low = {k.lower(): v for k, v in headers.items()}
        try:
            meta = cls(
                model=low[H_MODEL.lower()],
                sample_rate=int(low[H_SAMPLE_RATE.lower()]),
                duration_s=float(low[H_DURATION.lower()]),
                elapsed_ms=float(low.get(H_ELAPSED_MS.lower(), "nan")),
                protocol_version=low.get(H_PROTOCOL.lower(), ""),
                format=low.get(H_FORMAT.lower(), "wav"),
                voice=low.get(H_VOICE.lower()),
                request_id=low.get(H_REQUEST_ID.lower()),
            )
        except (KeyError, ValueError):
            return None
        if meta.sample_rate <= 0 or not (meta.duration_s >= 0):
            return None
        return meta


def _header_safe(s: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in s)[:256]


# ---- parsing request bodies (after the signature is verified) ----------------------------------------
class BodyError(ValueError):
    """A request body that cannot be read: `status` is 400 (malformed) or 422 (invalid field)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    more = len(e.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BodyError(400, E_MALFORMED, "empty body; expected a JSON object")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BodyError(400, E_MALFORMED, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BodyError(400, E_MALFORMED, "body must be a JSON object")
    return data


_Model = TypeVar("_Model", bound=BaseModel)


def _validate(model: type[_Model], data: dict[str, Any], max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> _Model:
    try:
        return model.model_validate(data, context={"max_text_chars": max_text_chars})
    except ValidationError as e:
        raise BodyError(422, E_INVALID, _validation_message(e)) from None
    except (ValueError, TypeError, RecursionError) as e:  # defensive: never a 500 for client input
        raise BodyError(422, E_INVALID, str(e)[:200]) from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parse_json(model: type[_Model], body: bytes, content_type: str | None,
                max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> _Model:
    """A JSON body (application/json or no type) validated as `model`: 400 for the body, 422 for a field."""
    mt = _media_type(content_type)
    if mt not in ("", "application/json"):
        raise BodyError(400, E_MALFORMED, f"content type '{mt}' is not application/json")
    return _validate(model, _json_object(body), max_text_chars)


def parse_tts(body: bytes, content_type: str | None, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> TtsRequest:
    return _parse_json(TtsRequest, body, content_type, max_text_chars)


def parse_music(body: bytes, content_type: str | None) -> MusicRequest:
    return _parse_json(MusicRequest, body, content_type)


def parse_clone(body: bytes, content_type: str | None, *,
                max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> CloneRequest:
    mt = _media_type(content_type)
    if mt in ("", "application/json"):
        return _validate(CloneRequest, _json_object(body), max_text_chars)
    if mt == "multipart/form-data":
        return _validate(CloneRequest, _multipart_fields(body, content_type or ""), max_text_chars)
    raise BodyError(400, E_MALFORMED, f"content type '{mt}' is neither application/json nor multipart/form-data")


def parse_seen(body: bytes, content_type: str | None) -> SeenRequest:
    return _parse_json(SeenRequest, body, content_type)


_INT_FIELDS = {"sample_rate", "seed"}


def _multipart_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """Form fields of a multipart/form-data body (the stdlib MIME parser; no extra dependency)."""
    if "boundary=" not in content_type:
        raise BodyError(400, E_MALFORMED, "multipart body without a boundary")
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    except Exception:  # the parser is lenient; anything it raises is a malformed body
        raise BodyError(400, E_MALFORMED, "unreadable multipart body") from None
    if not msg.is_multipart():
        raise BodyError(400, E_MALFORMED, "unreadable multipart body")
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or not isinstance(name, str):
            continue
        raw = part.get_payload(decode=True)  # bytes (None for a multipart part)
        payload = raw if isinstance(raw, bytes) else b""
        if name == "reference_audio":
            out[name] = payload
            continue
        try:
            value: Any = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError(400, E_MALFORMED, f"form field '{name}' is not UTF-8") from None
        if name in _INT_FIELDS:
            try:
                value = int(value)
            except ValueError:
                raise BodyError(422, E_INVALID, f"{name}: not an integer") from None
        out[name] = value
    if not out:
        raise BodyError(400, E_MALFORMED, "multipart body has no form fields")
    return out


def encode_multipart_clone(fields: Mapping[str, Any], reference_audio: bytes,
                           filename: str = "reference.wav") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data clone request (what a client sends)."""
    import secrets

    boundary = "asn" + secrets.token_hex(12)
    lines: list[bytes] = []
    for k, v in fields.items():
        if v is None:
            continue
        lines += [f"--{boundary}".encode(), f'Content-Disposition: form-data; name="{k}"'.encode(), b"",
                  str(v).encode("utf-8")]
    lines += [f"--{boundary}".encode(),
              f'Content-Disposition: form-data; name="reference_audio"; filename="{filename}"'.encode(),
              b"Content-Type: application/octet-stream", b"", reference_audio, f"--{boundary}--".encode(), b""]
    return b"\r\n".join(lines), f"multipart/form-data; boundary={boundary}"


def error_json(code: str, message: str) -> bytes:
    return ErrorBody(code=code, message=message[:500]).model_dump_json().encode()
