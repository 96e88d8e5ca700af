"""Shared fixtures for the scoring tests: one EngineCache, offline voices and models loaded once per
session, and one scored "evidence" batch that several tests read."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import Audio
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.base import SynthesisRequest

PROMPTS = [
    "Can you believe it's already the end of November?",
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your umbrella tomorrow morning.",
    "She sells sea shells by the sea shore.",
    "The library opens at nine and closes at six.",
    "We walked along the river until the sun went down.",
    "My favorite color is green, like the leaves in spring.",
    "Turn left at the next corner and keep going straight.",
    "The children laughed as the puppy chased its tail.",
    "A cup of hot tea is the best way to start the day.",
]
OTHER = "Seven large ships sailed slowly across the frozen northern sea."


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return list(PROMPTS)


@pytest.fixture(scope="session")
def cache(cpu_cache):
    """The process cache on CPU (shared with the CLI tests: each model loads once per session)."""
    return cpu_cache


@pytest.fixture(scope="session")
def voices(cache) -> dict[str, list[Audio]]:
    """Each offline voice reading PROMPTS (+ OTHER last)."""
    reqs = [SynthesisRequest(t) for t in [*PROMPTS, OTHER]]
    out = {}
    with cache.engine("piper:en_US-joe-medium") as e:
        out["piper"] = e.synthesize(reqs)
    with cache.engine("espeak:en-us") as e:
        out["espeak"] = e.synthesize(reqs)
        out["espeak_f3"] = e.synthesize([SynthesisRequest(t, voice="en-us+f3") for t in [*PROMPTS[:2], OTHER]])
    return out


@pytest.fixture(scope="session")
def settings_offline() -> ScoreSettings:
    return ScoreSettings(preset="offline")


@pytest.fixture(scope="session")
def degenerate(voices) -> dict[str, Audio]:
    p = voices["piper"][0]
    sr, n = p.sample_rate, len(p.samples)
    rng = np.random.default_rng(0)
    return {
        "silence": Audio(np.zeros(n, np.float32), sr),
        "white_noise": Audio((rng.standard_normal(n) * 0.1).astype(np.float32), sr),
        "tone_440": Audio((0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32), sr),
        "clipped": Audio(np.clip(p.samples * 8, -1, 1), sr),
        "reversed": Audio(p.samples[::-1].copy(), sr),
    }


@pytest.fixture(scope="session")
def evidence(cache, settings_offline, voices, degenerate):
    """One batch through the real offline pipeline: piper and espeak on every prompt, the piper clip
    against another sentence, and the degenerate clips. {name: ScoreResult}."""
    from audiosubnet.scoring import ScoreItem, Scoring

    named: list[tuple[str, ScoreItem]] = []
    for i, t in enumerate(PROMPTS):
        named.append((f"piper{i}", ScoreItem(t, voices["piper"][i], uid=1)))
        named.append((f"espeak{i}", ScoreItem(t, voices["espeak"][i], uid=2)))
    named.append(("piper_wrong_text", ScoreItem(OTHER, voices["piper"][0], uid=3)))
    for k, a in degenerate.items():
        named.append((k, ScoreItem(PROMPTS[0], a, uid=10 + len(named))))
    scoring = Scoring(settings_offline, cache=cache)
    results = scoring.score([it for _, it in named])
    return {name: r for (name, _), r in zip(named, results, strict=True)}
