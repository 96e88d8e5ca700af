"""Texts over an engine's max_text_chars are spoken in pieces (`asn tts say` / `asn tts batch`)."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from audiosubnet import audio as audiolib
from audiosubnet.commands.app import app
from audiosubnet.engines import longform
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import InputError

LONG = " ".join(f"Sentence number {i} is here, and it goes on for a little while." for i in range(80))


@pytest.fixture
def fake():
    cache = EngineCache(budget_bytes=None)
    with cache.engine("fake:ms_per_char=10,max_batch=8") as engine:
        yield engine
    cache.clear()


def test_a_5000_character_text_is_spoken_not_refused(fake):
    assert len(LONG) > 5000 > fake.capabilities.max_text_chars
    with pytest.raises(InputError):
        fake.check(SynthesisRequest(LONG))
    longform.check(fake, SynthesisRequest(LONG))  # no error
    FakeEngine.calls.clear()
    short = SynthesisRequest("A short one.")
    out = longform.synthesize(fake, [SynthesisRequest(LONG), short], max_batch=8)
    n = len(longform.pieces(SynthesisRequest(LONG), 1000))
    assert n == 6 and all(size <= 8 for _, size in FakeEngine.calls)
    speech_s = sum(len(p.text) for p in longform.pieces(SynthesisRequest(LONG), 1000)) * 0.01
    assert out[0].duration == pytest.approx(speech_s + (n - 1) * longform.PAUSE_S, abs=0.01)
    assert out[1].duration == pytest.approx(len(short.text) * 0.01, abs=0.002)


def test_short_texts_pass_through_unchanged(fake):
    FakeEngine.calls.clear()
    reqs = [SynthesisRequest("One."), SynthesisRequest("Two.")]
    out = longform.synthesize(fake, reqs, max_batch=8)
    assert FakeEngine.calls == [("ms_per_char=10,max_batch=8", 2)] and len(out) == 2
    with pytest.raises(InputError):
        longform.check(fake, SynthesisRequest("   "))


def test_tts_say_and_batch_speak_long_texts(tmp_path):
    runner = CliRunner()
    out = tmp_path / "long.wav"
    r = runner.invoke(app, ["tts", "say", LONG, "-o", str(out), "--model", "fake:ms_per_char=5"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert audiolib.read(out).duration > len(LONG) * 0.005
    prompts = tmp_path / "p.csv"
    with prompts.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "text"], ["long", LONG], ["short", "Hi there."]])
    r = runner.invoke(app, ["tts", "batch", str(prompts), "--out", str(tmp_path / "o"), "--model",
                            "fake:ms_per_char=5"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert audiolib.read(tmp_path / "o" / "long.wav").duration > len(LONG) * 0.005
