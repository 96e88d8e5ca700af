"""What a round asks of miners. Each task makes its per-round material, queries one miner, and turns
the answer into a `ScoreItem` for the scoring pipeline.

- `TtsTask`: speak the prompt (`POST /v1/tts`).
- `CloneTask`: speak the prompt in the voice of a reference clip (`POST /v1/clone`). The reference is
  made by the validator for this round, so no miner can predict it: a random offline voice (the Piper
  voice or an espeak-ng voice and variant) reads another fresh sentence, then a WORLD transform moves
  its pitch and vocal tract by random amounts. Answers are scored on speaker similarity to the
  reference, intelligibility and naturalness; returning the reference itself scores 0 (the scoring
  pipeline compares fingerprints with the reference).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.chain.base import Peer
from audiosubnet.protocol import CloneRequest, TtsRequest
from audiosubnet.scoring.base import ScoreItem
from audiosubnet.scoring.base import Task as TaskKind
from audiosubnet.validator.client import MinerClient, MinerResult
from audiosubnet.validator.prompts import generate

log = logging.getLogger(__name__)


class Task(Protocol):
    name: str

    async def prepare(self, prompt: str) -> Any:
        """Per-round material shared by every miner (e.g. a reference clip)."""
        ...

    async def query(self, client: MinerClient, peer: Peer, prompt: str, material: Any,
                    timeout_s: float, seed: int | None = None) -> MinerResult:
        """Ask one miner; `seed` is this miner's own (seedable engines render deterministically per miner)."""
        ...

    def item(self, peer: Peer, prompt: str, material: Any, result: MinerResult) -> ScoreItem: ...


def _item(task: TaskKind, peer: Peer, prompt: str, result: MinerResult, reference: Audio | None = None) -> ScoreItem:
    return ScoreItem(text=prompt, audio=result.audio, task=task, reference=reference, uid=int(peer.uid),
                     hotkey=peer.hotkey, id=f"uid{peer.uid}", elapsed_s=result.latency_s)


class TtsTask:
    name = "tts"

    async def prepare(self, prompt: str) -> Any:
        return None

    async def query(self, client: MinerClient, peer: Peer, prompt: str, material: Any,
                    timeout_s: float, seed: int | None = None) -> MinerResult:
        return await client.tts(peer.endpoint, peer.hotkey, TtsRequest(text=prompt, format="wav", seed=seed),
                                timeout_s=timeout_s)

    def item(self, peer: Peer, prompt: str, material: Any, result: MinerResult) -> ScoreItem:
        return _item("tts", peer, prompt, result)


@dataclass(frozen=True)
class Reference:
    audio: Audio
    text: str
    wav: bytes
    voice: str  # how it was made (for logs), never sent to miners


ESPEAK_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
                   "+klatt", "+klatt2")


class CloneTask:
    """A voice-clone round: a fresh, unpredictable reference voice per round."""

    name = "clone"

    def __init__(self, cache: Any, seed: int | None = None, piper_share: float = 0.5):
        self.cache = cache
        self.rng = random.Random(seed)
        self.piper_share = piper_share

    async def prepare(self, prompt: str) -> Reference:
        return await asyncio.to_thread(self.make_reference)

    def make_reference(self) -> Reference:
        from audiosubnet.engines.base import SynthesisRequest

        rng = self.rng
        text = generate(rng)
        if rng.random() < self.piper_share:
            model, voice = "piper", None
        else:
            model, voice = "espeak:en-us", rng.choice(ESPEAK_BASES) + rng.choice(ESPEAK_VARIANTS)
        speed = rng.uniform(0.85, 1.15)
        with self.cache.engine(model) as engine:
            base = engine.synthesize([SynthesisRequest(text, voice=voice, speed=speed)])[0]
        f0_factor, warp = rng.uniform(0.72, 1.4), rng.uniform(0.88, 1.14)
        audio = shift_voice(base, f0_factor, warp)
        label = f"{model}{'/' + voice if voice else ''} f0x{f0_factor:.2f} warp{warp:.2f} speed{speed:.2f}"
        return Reference(audio, text, audiolib.encode(audio, "wav"), label)

    async def query(self, client: MinerClient, peer: Peer, prompt: str, material: Reference,
                    timeout_s: float, seed: int | None = None) -> MinerResult:
        req = CloneRequest(text=prompt, reference_audio=material.wav, reference_text=material.text, format="wav",
                           seed=seed)
        return await client.clone(peer.endpoint, peer.hotkey, req, timeout_s=timeout_s)

    def item(self, peer: Peer, prompt: str, material: Reference, result: MinerResult) -> ScoreItem:
        return _item("clone", peer, prompt, result, reference=material.audio)


def shift_voice(a: Audio, f0_factor: float, warp: float) -> Audio:
    """A new speaker from an existing one: WORLD analysis, pitch times `f0_factor`, formants times `warp`."""
    from audiosubnet.engines.world import FRAME_MS, analyse, load_pyworld, warp_envelopes

    pw = load_pyworld()
    w = analyse(a.samples, a.sample_rate)
    f0 = w.f0 * f0_factor
    sp = np.exp(warp_envelopes(np.log(np.maximum(w.sp, 1e-20)), warp, a.sample_rate))
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(w.ap),
                      a.sample_rate, FRAME_MS)
    y = np.nan_to_num(y.astype(np.float32))
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return Audio(y * (0.89 / peak) if peak > 1e-6 else y, a.sample_rate)
