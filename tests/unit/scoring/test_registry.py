"""The scorer registry: built-ins come from the `audiosubnet.scorers` entry points, the pipeline is built from
scorer ids, and a scorer registered at run time takes its id's place in the pipeline."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from audiosubnet.config import ScoreSettings
from audiosubnet.errors import ConfigError, UsageError
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.scoring import ScoreItem, Scorer, Scoring, registry
from audiosubnet.scoring.asr import AsrScorer
from audiosubnet.scoring.dnsmos import DnsmosScorer
from audiosubnet.scoring.speaker import SpeakerScorer
from audiosubnet.scoring.utmos import UtmosScorer

TEXT = "Please remember to bring your umbrella tomorrow morning."


class Asr(Scorer):
    name, metrics, role = "asr", ("wer", "cer"), "asr"

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"wer": 0.0, "cer": 0.0, "relatedness": 1.0} for _ in items]


class Loudness(Scorer):
    """A third-party MOS predictor: registered by id, named in score.mos_models."""

    name, metrics = "loudness", ("dnsmos_ovrl",)

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"dnsmos_ovrl": 3.25} for _ in items]


@pytest.fixture
def registered():
    """Register scorer classes for one test; the entry points come back afterwards."""
    names = []

    def add(cls, name=None):
        registry.register(cls, name)
        names.append(name or cls.name)

    yield add
    for n in names:
        registry.unregister(n)


def test_builtins_come_from_entry_points():
    eps = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"asr", "dnsmos", "utmos", "speaker"} <= eps
    assert registry.get_scorer_class("asr") is AsrScorer and registry.get_scorer_class("dnsmos") is DnsmosScorer
    assert registry.get_scorer_class("utmos") is UtmosScorer and registry.get_scorer_class("speaker") is SpeakerScorer
    assert registry.scorer_names(role="mos") == ["dnsmos", "utmos"]
    with pytest.raises(UsageError, match="unknown scorer 'nope'"):
        registry.get_scorer_class("nope")


def test_the_plan_is_built_from_ids():
    cache = ModelCache(None, "cpu", "float32")
    s = Scoring(ScoreSettings(preset="offline"), cache=cache)
    assert [k for k, *_ in s.specs(clone=True)] == [
        "score:asr:fw:bundled@cpu/float32", "score:dnsmos:onnxruntime@cpu/float32", "score:speaker:dvector@cpu/float32"]
    gpu = Scoring(ScoreSettings(preset="gpu", speaker_model="wavlm", mos_models="utmos,dnsmos"),
                  cache=ModelCache(None, "cuda", "float16"))  # nothing loads: only the plan is read
    assert [(k, dev, dt) for k, dev, dt, _ in gpu.specs(clone=False)] == [
        ("score:asr:hf:openai/whisper-large-v3-turbo@cuda/float16", "cuda", "float16"),
        ("score:utmos:utmos@cuda/float16", "cuda", "float16"),
        ("score:dnsmos:torch@cuda/float16", "cuda", "float16")]
    assert type(gpu.specs(clone=True)[-1][3]()).__name__ == "XVectorScorer"  # made, not loaded


def test_unknown_mos_names_the_registered_ones(registered):
    with pytest.raises(ConfigError, match="unknown MOS model 'nope'") as e:
        Scoring(ScoreSettings(mos_models="dnsmos,nope"), cache=ModelCache(None, "cpu", "float32"))
    assert "dnsmos and/or utmos" in e.value.hint
    registered(Loudness)
    with pytest.raises(ConfigError) as e:
        Scoring(ScoreSettings(mos_models="nope"), cache=ModelCache(None, "cpu", "float32"))
    assert "dnsmos and/or loudness and/or utmos" in e.value.hint


def test_a_registered_scorer_runs_in_the_pipeline(registered, voices):
    registered(Asr)  # replaces the built-in ASR for this test
    registered(Loudness)
    s = Scoring(ScoreSettings(preset="offline", mos_models="loudness"), cache=ModelCache(None, "cpu", "float32"))
    assert s.plan.mos == ("loudness",)
    [res] = s.score([ScoreItem(TEXT, voices["piper"][2], uid=1)])
    assert res.reason is None and res.metrics["dnsmos_ovrl"] == 3.25 and res.metrics["wer"] == 0.0
    assert set(s.timings) == {"checks", "score:asr:", "score:loudness:"}  # the default spec: no model
    registry.unregister("asr")
    assert registry.get_scorer_class("asr") is AsrScorer  # the entry point again
