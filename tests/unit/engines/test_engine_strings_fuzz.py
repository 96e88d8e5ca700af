"""Every engine-bound string of the offline engines (espeak, piper, world), fuzzed in process: an engine either
speaks or raises InputError; it never crashes the process (a crash here ends the test run) and never raises
anything else. Voice strings are checked against what the engine really offers before they reach native code.
(The same through the miner app: tests/unit/miner/test_engine_strings_via_miner.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiosubnet.audio import Audio
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.errors import InputError


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


VARIANT_ATTACKS = ["x" * n for n in (36, 37, 38, 40, 64, 200, 5000)] + [
    "../../../../etc/passwd", "/etc/passwd", "..", ".", "!v/f3", "f3/../../f3", "f3\x00", "f3\n", "%s%n", ""]
voices = st.one_of(
    st.sampled_from(["en-us", "en-gb", "EN-US", "gmw/en-US", "en-us+f3", "en+m3", "f3", "+f3", "en-us+", "+",
                     "en-us++f3", "en-us+f3+m3", "en-us+Mr serious", "mb-us1", "default", "a"]),
    st.sampled_from(VARIANT_ATTACKS).map(lambda v: "en-us+" + v),
    st.sampled_from(VARIANT_ATTACKS),
    st.text(max_size=60),
    st.text(alphabet="en-us+/.\\\x00\n%f3 ", max_size=80),
    st.builds(lambda a, b: a + "+" + b, st.text(max_size=20), st.text(max_size=50)),
)
texts = st.one_of(st.text(min_size=1, max_size=120),
                  st.text(alphabet="ab .,?!\u00e9\u4e2d\U0001f600\x00\n\t\u202e\ufeff[[]]<>&;", min_size=1,
                          max_size=80),
                  st.sampled_from(["[[ADDR]]", "<speak>x</speak>", "\x00\x00", "%s%s%s%n", "a" * 4000]))


def _speaks_or_refuses(engine, request: SynthesisRequest) -> None:
    try:
        (a,) = engine.synthesize([request])
    except InputError:
        return
    assert isinstance(a, Audio) and a.samples.dtype == np.float32 and np.isfinite(a.samples).all()


def test_espeak_refuses_the_voice_strings_that_crashed_it(cpu_cache):
    with cpu_cache.engine("espeak:en-us") as engine:
        for bad in ["en-us+" + "x" * 37, "en-us+../../../../etc/passwd", "f3", "en-us+f3\n", "en-us+/etc/passwd"]:
            with pytest.raises(InputError, match="espeak-ng voice"):
                engine.synthesize([SynthesisRequest("Hello.", voice=bad)])
        for good in ["en-us+f3", "en-gb+m3", "gmw/en-US", "EN-GB"]:
            assert engine.synthesize([SynthesisRequest("Hello.", voice=good)])[0].duration > 0.2


@_settings(400)
@given(voice=voices, text=texts)
def test_espeak_voice_and_text_fuzz(cpu_cache, voice, text):
    with cpu_cache.engine("espeak:en-us") as engine:
        _speaks_or_refuses(engine, SynthesisRequest(text, voice=voice))


@_settings(120)
@given(model=voices)
def test_espeak_model_name_fuzz(cpu_cache, model):
    """The model name is the default voice: a model id from a CSV row or a flag is checked the same way."""
    from audiosubnet.engines.espeak import EspeakEngine

    engine = EspeakEngine(model or "en-us")
    engine.setup()
    _speaks_or_refuses(engine, SynthesisRequest("Hello."))


@_settings(60)
@given(voice=voices, text=texts)
def test_piper_voice_and_text_fuzz(cpu_cache, voice, text):
    with cpu_cache.engine("piper") as engine:
        _speaks_or_refuses(engine, SynthesisRequest(text[:200], voice=voice if voice else None))


def _reference() -> Audio:
    t = np.arange(16000, dtype=np.float32) / 16000
    return Audio((0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2).astype(np.float32),
                 16000)


@_settings(25)
@given(voice=voices, text=texts, reference_text=st.one_of(st.none(), texts))
def test_world_voice_text_and_reference_text_fuzz(cpu_cache, voice, text, reference_text):
    with cpu_cache.engine("world") as engine:
        _speaks_or_refuses(engine, SynthesisRequest(text[:60], voice=voice or None, reference=_reference(),
                                                    reference_text=reference_text))
