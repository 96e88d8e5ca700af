"""Texts longer than an engine's `max_text_chars`: spoken sentence by sentence and joined.

    longform.check(engine, request)                    # the engine's own check, piece by piece
    audios = longform.synthesize(engine, requests, max_batch=16)
    for i, audio in longform.synthesize_iter(engine, requests): ...   # each as it is done, when all fit

A request whose text fits is passed through untouched (same audio as `engine.synthesize`). A longer one is
cut with `audiosubnet.text.chunk_text` (whole sentences packed up to the limit; a longer sentence at a
clause, then at a word), its pieces go to the engine in
batches of at most `max_batch` together with the other requests' pieces, and the pieces of each request are
joined with a short pause. Used by `asn tts say` and `asn tts batch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.engines.base import SpeechEngine, SynthesisRequest
from audiosubnet.text import chunk_text

PAUSE_S = 0.12  # silence between two pieces of one text


def pieces(request: SynthesisRequest, max_chars: int) -> list[SynthesisRequest]:
    """The request itself if its text fits, else one request per piece (same voice, speed, seed, reference)."""
    if len(request.text or "") <= max_chars:
        return [request]
    parts = chunk_text(request.text, max_chars, pack=True)
    return [dataclasses.replace(request, text=p) for p in parts] or [request]


def check(engine: SpeechEngine, request: SynthesisRequest) -> None:
    """`engine.check` without the length limit: raises the engine's InputError for anything else."""
    for p in pieces(request, engine.capabilities.max_text_chars):
        engine.check(p)


def synthesize(engine: SpeechEngine, requests: Sequence[SynthesisRequest], max_batch: int = 1) -> list[Audio]:
    """One Audio per request, however long its text."""
    limit = engine.capabilities.max_text_chars
    split = [pieces(r, limit) for r in requests]
    if all(len(s) == 1 and s[0] is r for s, r in zip(split, requests, strict=True)):
        return engine.synthesize(list(requests))
    flat = [p for s in split for p in s]
    step = max(1, max_batch)
    out: list[Audio] = []
    for i in range(0, len(flat), step):
        out.extend(engine.synthesize(flat[i:i + step]))
    joined, k = [], 0
    for s in split:
        joined.append(join(out[k:k + len(s)]))
        k += len(s)
    return joined


def synthesize_iter(engine: SpeechEngine, requests: Sequence[SynthesisRequest]) -> Iterator[tuple[int, Audio]]:
    """As `engine.synthesize_iter` (each (index, audio) as it is done) when every text fits; a batch with a longer
    text is spoken whole (its pieces batched together), then handed over."""
    limit = engine.capabilities.max_text_chars
    if all(len(r.text or "") <= limit for r in requests):
        yield from engine.synthesize_iter(list(requests))
        return
    yield from enumerate(synthesize(engine, requests, max_batch=len(requests)))


def join(clips: Sequence[Audio], pause_s: float = PAUSE_S) -> Audio:
    """Clips one after the other with `pause_s` of silence between them (resampled to the first one's rate)."""
    if len(clips) == 1:
        return clips[0]
    sr = clips[0].sample_rate
    gap = np.zeros(int(round(pause_s * sr)), dtype=np.float32)
    parts: list[np.ndarray] = []
    for i, c in enumerate(clips):
        if i:
            parts.append(gap)
        parts.append(audiolib.resample(c, sr).samples)
    return Audio(np.concatenate(parts), sr)
