"""Text-to-music within the engine contract.

A music engine is a `SpeechEngine` whose capabilities say `music=True, tts=False`, so the registry,
the ModelCache, `asn models`, the miner's queue and `asn bench` handle it like any other engine.
It takes `MusicRequest`s: a `SynthesisRequest` whose `text` is the prompt, plus the clip's length.

    with cache.engine("musicgen:facebook/musicgen-small") as engine:
        [clip] = engine.synthesize([MusicRequest("lo-fi beat with soft piano", duration_s=10, seed=7)])

`music_engine_check(engine)` is what callers that need music (commands, batch job, miner) use to refuse a
speech model with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audiosubnet.engines.base import SpeechEngine, SynthesisRequest
from audiosubnet.errors import InputError

if TYPE_CHECKING:
    import numpy as np

MAX_PROMPT_CHARS = 256
MAX_DURATION_S = 30.0
MIN_DURATION_S = 0.5


@dataclass(frozen=True)
class MusicRequest(SynthesisRequest):
    """`text` is the prompt; `duration_s` the length of the clip wanted."""

    duration_s: float = 10.0


def as_music_request(request: SynthesisRequest, default_s: float = 10.0) -> MusicRequest:
    if isinstance(request, MusicRequest):
        return request
    return MusicRequest(text=request.text, seed=request.seed, duration_s=default_s)


def check_music_request(request: SynthesisRequest, model_id: str, max_chars: int = MAX_PROMPT_CHARS,
                        max_duration_s: float = MAX_DURATION_S) -> None:
    """Reject a prompt or a length a music engine cannot serve, with a reason a user understands."""
    text = request.text or ""
    if not text.strip():
        raise InputError("empty prompt")
    if len(text) > max_chars:
        raise InputError(f"prompt is {len(text)} characters; {model_id} takes at most {max_chars}")
    if request.reference is not None:
        raise InputError(f"{model_id} makes music; it cannot clone voices")
    duration = as_music_request(request).duration_s
    if not (MIN_DURATION_S <= duration <= max_duration_s):  # also rejects NaN
        raise InputError(f"duration {duration:g} s is outside {MIN_DURATION_S:g}-{max_duration_s:g} s")


def music_engine_check(engine: SpeechEngine) -> None:
    if not engine.capabilities.music:
        raise InputError(f"{engine.model_id} is not a text-to-music model",
                         hint="Use a music model, e.g. musicgen:facebook/musicgen-small (see `asn models list`).")


def trim(samples: np.ndarray, sample_rate: int, duration_s: float) -> np.ndarray:
    """The first `duration_s` seconds of `samples`."""
    return samples[: max(1, int(round(duration_s * sample_rate)))]


def duration_chunks(requests: Sequence[MusicRequest], size: int) -> list[list[int]]:
    """Indices grouped into chunks of at most `size`, longest first: a chunk generates for its longest item,
    so similar lengths share a chunk."""
    order = sorted(range(len(requests)), key=lambda i: -requests[i].duration_s)
    size = max(1, size)
    return [order[i:i + size] for i in range(0, len(order), size)]
