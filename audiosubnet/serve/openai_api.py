"""The OpenAI side of `asn serve`: request schema, error bodies, model and voice names.

Field names and ranges follow the OpenAI API reference for `POST /v1/audio/speech` and the `openai` Python
SDK (`openai.types.audio.speech_create_params`): `input` (at most 4096 characters), `model`, `voice`,
`instructions`, `response_format` (mp3 | opus | aac | flac | wav | pcm, default mp3), `speed` (0.25-4.0),
`voice` a name or a custom voice object `{"id": "voice_..."}` (a saved voice),
`stream_format` (audio | sse). Errors are OpenAI's shape:
`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# OpenAI's built-in voices (the SDK's `voice` literal): mapped to local voices by the `serve.voices` setting.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
# OpenAI's TTS model names: all of them mean the default model.
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MAX_INSTRUCTIONS = 4096


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str = Field(min_length=1)
    model: str | None = None
    voice: str | None = None
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_object(cls, v: Any) -> Any:
        """OpenAI's custom-voice form {"id": "voice_1234"} is the id."""
        if isinstance(v, dict) and set(v) == {"id"}:
            return v["id"]
        return v


class ApiError(Exception):
    """An OpenAI-style error answer."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message[:1000], "type": type, "param": param, "code": code}}).encode()


def parse_speech(body: bytes, content_type: str | None, max_input_chars: int) -> SpeechRequest:
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt not in ("", "application/json"):
        raise ApiError(400, f"content type '{mt}' is not application/json", code="invalid_content_type")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    try:
        req = SpeechRequest.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from None
    if not req.input.strip():
        raise ApiError(400, "'input' is empty", param="input", code="invalid_value")
    if len(req.input) > max_input_chars:
        raise ApiError(400, f"'input' is {len(req.input)} characters; the maximum is {max_input_chars}",
                       param="input", code="string_above_max_length")
    if not math.isfinite(req.speed):
        raise ApiError(400, "'speed' must be a number between 0.25 and 4.0", param="speed", code="invalid_value")
    return req


def validation_error(e: ValidationError) -> ApiError:
    err = e.errors()[0]
    param = ".".join(str(x) for x in err.get("loc", ())) or None
    kind = err.get("type", "")
    if kind == "missing":
        return ApiError(400, f"missing required parameter: '{param}'", param=param,
                        code="missing_required_parameter")
    return ApiError(400, f"invalid value for '{param}': {err.get('msg', 'invalid')}", param=param,
                    code="invalid_value")


def model_object(model_id: str, created: int, owned_by: str = "asn") -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
