"""POST /v1/audio/speech, after parsing: resolve model and voice, split the text, synthesize, encode, stream.

The text is cut into sentences (`audiosubnet.text.chunk_text`, none over the engine's `max_text_chars`). The
first sentence goes to the shared batching service alone, so its audio (and the response's first bytes) come
as soon as that one sentence is spoken; the next ones go in groups of 1, 2, 4 ... `LOOKAHEAD` sentences (a group
is one batch), each submitted while the previous group is encoded and sent (a client that leaves costs at most
one group of wasted synthesis). A streamed first sentence longer than the engine speaks in `FIRST_TARGET_MS` is
cut (at a clause break, else between words, never after a word like "the"): `FirstChunkPace` learns from the
first chunks it sees how long the engine takes per character (a slow or busy CPU gets a shorter first piece; a
GPU speaks any first sentence of up to `FIRST_CHARS` characters in time, so it is not cut there). A one-sentence
text is answered as one file with exact headers; a longer one streams: `pcm` raw, `wav` with a streaming
header, the others through PyAV's incremental encoders, or base64 in OpenAI's `speech.audio.delta` /
`speech.audio.done` server-sent events.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import statistics
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from audiosubnet.audio import Audio
from audiosubnet.errors import Overloaded
from audiosubnet.serve import encode as enc
from audiosubnet.serve.openai_api import OPENAI_MODELS, OPENAI_VOICES, ApiError, SpeechRequest, sse_event
from audiosubnet.serve.voices import VoiceStore, is_voice_id
from audiosubnet.service.batching import RAW, Rendered, TtsService
from audiosubnet.text import chunk_text, wrap

if TYPE_CHECKING:
    from audiosubnet.service.batching import _Model

T = TypeVar("T")

log = logging.getLogger(__name__)

LOOKAHEAD = 16  # sentences in the service at once for one streamed request
FIRST_CHARS = 100  # a longer first sentence is cut at a clause break: its audio is what the client waits for
FIRST_TARGET_MS = 150.0  # the engine time a streamed first piece aims at (the first-byte goal is 300 ms)
FIRST_MIN_CHARS = 16  # ... but never a shorter first piece than this (two or three words)
_WEAK_ENDS = frozenset(("a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "by", "for",
                        "with", "from", "as", "than", "that", "which", "who", "whose", "is", "are", "was", "were",
                        "be", "been", "has", "have", "had", "my", "your", "his", "her", "its", "our", "their", "this",
                        "these", "those", "not", "no", "very", "so"))


class FirstChunkPace:
    """The first chunk's length per model, from how long the engine took per character for the last `window`
    first chunks (their median: one slow call, such as the one that loaded the model, does not count for long;
    until one is measured: `FIRST_CHARS`)."""

    def __init__(self, target_ms: float = FIRST_TARGET_MS, window: int = 5):
        self.target_ms = target_ms
        self.window = window
        self._rates: dict[str, collections.deque[float]] = {}

    def chars(self, model_id: str) -> int:
        rates = self._rates.get(model_id)
        if not rates:
            return FIRST_CHARS
        return int(min(FIRST_CHARS, max(FIRST_MIN_CHARS, self.target_ms / statistics.median(rates))))

    def observe(self, model_id: str, chars: int, engine_ms: float) -> None:
        if chars > 0 and engine_ms > 0:
            self._rates.setdefault(model_id, collections.deque(maxlen=self.window)).append(engine_ms / chars)


def first_piece(sentence: str, max_chars: int) -> list[str]:
    """[sentence] when it fits in `max_chars`, else [head, rest]: cut at the last clause break that fits, else
    between words (a head ending on a word like "the" or "of" gives that word to the rest)."""
    pieces = wrap(sentence, max_chars)
    if len(pieces) == 1:
        return pieces
    words = pieces[0].split(" ")
    moved: list[str] = []
    while len(words) > 2 and words[-1].lower() in _WEAK_ENDS:
        moved.insert(0, words.pop())
    return [" ".join(words), " ".join(moved + pieces[1:])]


@dataclass
class Plan:
    """A speech request resolved against what is served."""

    model_id: str
    voice: str | None  # a voice of the model (None: its default)
    chunks: list[str]
    fmt: str
    sse: bool
    speed: float
    reference: Audio | None = None  # a saved voice: clone it
    reference_text: str | None = None
    voice_label: str = ""
    started: float = field(default_factory=time.monotonic)


def plan(req: SpeechRequest, service: TtsService, *, voice_map: dict[str, str], voices: VoiceStore | None,
         clone_model: str | None, pace: FirstChunkPace | None = None) -> Plan:
    """Resolve model/voice or raise ApiError (400/404) naming the parameter at fault."""
    reference = reference_text = None
    label = req.voice or ""
    if is_voice_id(req.voice):
        if voices is None or clone_model is None:
            raise ApiError(400, "saved voices are not enabled on this server (no cloning model)", param="voice",
                           code="cloning_unavailable")
        saved = voices.get(req.voice)  # VoiceNotFound -> 404 by the caller
        reference, reference_text = voices.reference(saved.id), saved.text or None
        model = service.resolve_model(clone_model, clone=True)
        voice = None
    else:
        model = _model(req.model, service)
        voice = req.voice
        if voice in OPENAI_VOICES:
            voice = voice_map.get(voice)  # unmapped: the model's default voice
        elif voice in ("", "default"):
            voice = None
        caps = model.caps
        if voice and caps.voices and not caps.open_voices and voice not in caps.voices:
            shown = ", ".join(caps.voices[:12]) + (" ..." if len(caps.voices) > 12 else "")
            named = (req.voice or "")[:80]
            raise ApiError(400, f"voice '{named}' is not a voice of {model.model_id} (voices: {shown}; "
                                f"or one of {', '.join(OPENAI_VOICES)}, or a saved voice id)", param="voice",
                           code="invalid_voice")
    limit = max(1, min(model.caps.max_text_chars, service.config.max_text_chars))
    chunks = chunk_text(req.input, limit)
    if not chunks:
        raise ApiError(400, "'input' has nothing to speak", param="input", code="invalid_value")
    if len(chunks) > 1 or req.stream_format == "sse":  # streamed: the first piece short
        first = pace.chars(model.model_id) if pace is not None else FIRST_CHARS
        chunks[:1] = first_piece(chunks[0], min(limit, first))
    if req.instructions:
        log.debug("instructions ignored: %s does not take them", model.model_id)
    return Plan(model.model_id, voice, chunks, req.response_format, req.stream_format == "sse", req.speed,
                reference, reference_text, label)


def _model(requested: str | None, service: TtsService) -> _Model:
    if requested is None or requested in OPENAI_MODELS or requested in ("", "default"):
        return service.resolve_model(None)
    try:
        return service.resolve_model(requested)
    except Exception as e:
        if "not served" in str(e):
            raise ApiError(404, f"the model '{requested[:80]}' does not exist here (see GET /v1/models)",
                           param="model", code="model_not_found") from None
        raise ApiError(400, str(e), param="model", code="invalid_model") from None


async def _one(service: TtsService, p: Plan, text: str, priority: int = 1) -> Rendered:
    """One chunk through the service; the first one of a request (priority 0) goes ahead of later chunks of
    other requests (priority 1) in the service's queue."""
    if p.reference is not None:
        return await service.clone(text, p.reference, reference_text=p.reference_text, model=p.model_id, fmt=RAW,
                                   speed=p.speed, priority=priority)
    return await service.synthesize(text, model=p.model_id, voice=p.voice, fmt=RAW, speed=p.speed,
                                    priority=priority)


async def _patient(service: TtsService, p: Plan, text: str, deadline: float) -> Rendered:
    """A later chunk of a stream already under way: a full queue means wait for room, not fail the stream."""
    pause = 0.02
    while True:
        try:
            return await _one(service, p, text)
        except Overloaded:
            if time.monotonic() + pause >= deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(0.5, pause * 2)


async def rendered(service: TtsService, p: Plan, deadline: float) -> AsyncGenerator[Rendered, None]:
    """Each chunk's audio, in order. The first sentence goes alone; then groups of 1, 2, 4 ... `LOOKAHEAD`
    sentences (each group one batch for a batching engine), the next group submitted as soon as the current
    one's first result is back, so the engine works on it while the current group is encoded and sent."""
    yield await _wait(_one(service, p, p.chunks[0], priority=0), deadline)
    i, size = 1, 1
    group: list[asyncio.Task[Rendered]] = []
    following: list[asyncio.Task[Rendered]] = []

    def submit() -> list[asyncio.Task[Rendered]]:
        nonlocal i, size
        tasks = [asyncio.ensure_future(_patient(service, p, text, deadline)) for text in p.chunks[i:i + size]]
        i += len(tasks)
        size = min(2 * size, LOOKAHEAD)
        return tasks

    try:
        group = submit()
        while group:
            first = await _wait(group[0], deadline)
            following = submit()
            yield first
            for t in group[1:]:
                yield await _wait(t, deadline)
            group, following = following, []
    finally:
        for t in (*group, *following):
            t.cancel()


async def _wait(aw: Awaitable[T], deadline: float) -> T:
    left = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(aw, max(0.001, left))
    except asyncio.TimeoutError:
        raise ApiError(504, "synthesis took longer than the server's request timeout", type="server_error",
                       code="timeout") from None


@dataclass
class Outcome:
    """Filled in while a response is produced (for logs and metrics)."""

    model_id: str = "-"
    audio_s: float = 0.0
    first_engine_ms: float = 0.0  # the engine call that made the first chunk
    first_queue_ms: float = 0.0
    first_byte_s: float | None = None
    status: int = 200


async def produce(service: TtsService, p: Plan, deadline: float, out: Outcome, pace: FirstChunkPace | None = None
                  ) -> tuple[bytes, AsyncIterator[bytes] | None, int]:
    """(first bytes, iterator of the rest or None for a whole file, sample rate sent).

    Everything up to the first chunk's audio happens here, so a bad request still gets its error status;
    a failure later ends the stream early (logged) - the status line has gone out already."""
    chunks = rendered(service, p, deadline)
    first = await chunks.__anext__()
    out.model_id, out.audio_s = first.model_id, first.duration_s
    out.first_engine_ms, out.first_queue_ms = first.engine_ms, first.queue_ms
    if pace is not None:
        pace.observe(p.model_id, len(p.chunks[0]), first.engine_ms)
    if len(p.chunks) == 1 and not p.sse:
        await chunks.aclose()
        data, rate = await asyncio.to_thread(enc.encode_whole, first.raw_audio, p.fmt)
        return data, None, rate
    encoder = enc.StreamEncoder(p.fmt, first.sample_rate)
    head = await asyncio.to_thread(encoder.feed, first.raw_audio)

    async def rest() -> AsyncIterator[bytes]:
        try:
            async for r in chunks:
                out.audio_s += r.duration_s
                data = await asyncio.to_thread(encoder.feed, r.raw_audio)
                if data:
                    yield _frame(data, p.sse)
            tail = await asyncio.to_thread(encoder.finish)
            if tail:
                yield _frame(tail, p.sse)
            if p.sse:
                n = sum(len(c) for c in p.chunks)
                yield sse_event({"type": "speech.audio.done",
                                 "usage": {"input_tokens": n, "output_tokens": 0, "total_tokens": n}})
        except Exception as e:  # the status line went out already: end the stream, say why in the log
            out.status = e.status if isinstance(e, ApiError) else 500
            log.warning("stream of %s ended early: %s", p.model_id, e)
        finally:
            await chunks.aclose()

    return _frame(head, p.sse) if head else b"", rest(), encoder.rate


def _frame(data: bytes, sse: bool) -> bytes:
    if not sse:
        return data
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
