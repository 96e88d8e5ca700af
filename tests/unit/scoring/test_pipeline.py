"""The pipeline's contract with fake scorers (fast): order of checks, duplicates across miners and
rounds, error isolation, versions; and fuzzing: nothing an item holds makes `score` raise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.cache import ModelCache
from audiosubnet.scoring import SCORING_VERSION, FingerprintHistory, ScoreItem, Scorer, Scoring
from audiosubnet.scoring.composite import composite

CALLS: list[tuple[str, int]] = []


class FakeAsr(Scorer):
    name, metrics = "asr", ("wer", "cer")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items: Sequence[ScoreItem]):
        CALLS.append((self.name, len(items)))
        assert all(it.audio.sample_rate == 16000 for it in items)
        if any("boom" in it.text for it in items):
            raise RuntimeError("boom")
        return [{"wer": 0.0 if "wrong" not in it.text else 1.0, "cer": 0.0} for it in items]


class FakeMos(Scorer):
    name, metrics = "dnsmos", ("dnsmos_ovrl", "dnsmos_p808")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        CALLS.append((self.name, len(items)))
        return [{"dnsmos_ovrl": 4.0, "dnsmos_p808": float("nan") if "nan" in it.text else 4.0} for it in items]


class FakeSpeaker(Scorer):
    name, metrics, needs_reference = "speaker", ("speaker_sim",), True

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        CALLS.append((self.name, len(items)))
        return [{"speaker_sim": 0.8} for _ in items]


@pytest.fixture
def fake_scoring():
    def make(settings: ScoreSettings | None = None, history=None) -> Scoring:
        return Scoring(settings or ScoreSettings(preset="offline"), cache=ModelCache(None, "cpu", "float32"),
                       history=history, scorers=[FakeAsr, FakeMos, FakeSpeaker])
    CALLS.clear()
    return make


TEXT = "Please remember to bring your umbrella tomorrow morning."


def test_scores_with_fakes_and_checks_first(fake_scoring, voices, degenerate):
    s = fake_scoring()
    clip = voices["piper"][2]
    res = s.score([ScoreItem(TEXT, clip, uid=1), ScoreItem(TEXT, degenerate["silence"], uid=2),
                   ScoreItem(TEXT, b"junk", uid=3), ScoreItem(TEXT, None, uid=4)])
    assert res[0].reason is None
    assert res[0].composite == pytest.approx(0.5 * 1.0 + 0.5 * (4.0 - 1.5) / 3.0)
    assert res[0].version == SCORING_VERSION and res[0].uid == 1
    assert [r.composite for r in res[1:]] == [0.0, 0.0, 0.0]
    assert "silent" in res[1].reason and "undecodable" in res[2].reason and res[3].reason == "no audio"
    assert CALLS == [("asr", 1), ("dnsmos", 1)]  # rejected items never reach the models; no clone item


def test_copies_across_miners_in_a_batch(fake_scoring, voices):
    a = voices["piper"][2]
    copy = audiolib.encode(audiolib.resample(a, 16000), "mp3")
    s = fake_scoring()
    res = s.score([ScoreItem(TEXT, copy, uid=2, elapsed_s=3.0), ScoreItem(TEXT, a, uid=1, elapsed_s=1.0),
                   ScoreItem(TEXT, a, uid=1, elapsed_s=2.0),  # the same miner again: not a copy
                   ScoreItem(TEXT, voices["piper"][3], uid=3, elapsed_s=0.5)])
    assert res[1].reason is None and res[2].reason is None and res[3].reason is None
    assert res[0].composite == 0 and res[0].duplicate_of == "uid 1" and "copy" in res[0].reason

    s = fake_scoring(ScoreSettings(preset="offline", duplicate_policy="all"))
    res = s.score([ScoreItem(TEXT, a, uid=1), ScoreItem(TEXT, copy, uid=2)])
    assert all(r.composite == 0 for r in res)


def test_copies_across_rounds_and_persisted_history(fake_scoring, voices, tmp_path):
    a = voices["piper"][2]
    s = fake_scoring()
    assert s.score([ScoreItem(TEXT, a, hotkey="5Honest")])[0].reason is None
    path = tmp_path / "history.npz"
    s.history.save(path)
    s2 = fake_scoring(history=FingerprintHistory.load(path))
    copy = audiolib.encode(a, "ogg")
    res = s2.score([ScoreItem(TEXT, copy, hotkey="5Copier", uid=9), ScoreItem(TEXT, a, hotkey="5Honest")])
    assert res[0].composite == 0 and "earlier answer" in res[0].reason
    assert res[1].reason is None
    assert s2.history.round == 2
    # the copy was not remembered: the honest miner answering again later is still not a copier
    later = s2.score([ScoreItem(TEXT, audiolib.encode(a, "flac"), hotkey="5Honest")])[0]
    assert later.reason is None


def test_clone_returning_the_reference_is_caught(fake_scoring, voices):
    ref = voices["piper"][3]
    s = fake_scoring()
    res = s.score([
        ScoreItem(TEXT, audiolib.encode(ref, "mp3"), task="clone", reference=ref, uid=1),
        ScoreItem(TEXT, voices["piper"][2], task="clone", reference=ref, uid=2),
        ScoreItem(TEXT, voices["piper"][2], task="clone", uid=3),
    ])
    assert res[0].composite == 0 and "reference" in res[0].reason
    assert res[1].reason is None and res[1].metrics["speaker_sim"] == 0.8
    assert res[2].error and "reference" in res[2].reason


def test_a_failing_scorer_only_fails_its_items(fake_scoring, voices):
    s = fake_scoring()
    clip = voices["piper"][2]
    res = s.score([ScoreItem(TEXT, clip, uid=1), ScoreItem(TEXT + " boom", clip, uid=1),
                   ScoreItem(TEXT + " nan", clip, uid=1), ScoreItem(TEXT + " wrong", clip, uid=1)])
    assert res[0].reason is None and res[0].composite > 0.5
    assert res[1].error and "boom" in res[1].reason and res[1].composite == 0
    assert res[2].reason is None and res[2].metrics["dnsmos_p808"] == 0.0  # non-finite -> 0, logged
    assert res[3].composite == 0 and "WER" in res[3].reason and not res[3].error


def test_profile_follows_settings(fake_scoring):
    a, b = fake_scoring(), fake_scoring()
    assert a.version == b.version
    c = fake_scoring(ScoreSettings(preset="offline", wer_gate=0.3))
    assert c.version != a.version and c.version.startswith(SCORING_VERSION + "+")


def test_composite_formula():
    s = ScoreSettings()
    m = {"wer": 0.1, "dnsmos_ovrl": 3.0, "dnsmos_p808": 4.0}
    value, reason, parts = composite(m, "tts", s)
    assert reason is None
    assert value == pytest.approx(0.5 * 0.8 + 0.5 * (3.5 - 1.5) / 3.0)
    assert composite({**m, "wer": 0.6}, "tts", s)[0] == 0
    value, reason, parts = composite({**m, "utmos": 4.5, "speaker_sim": 0.675}, "clone", s, "dvector")
    mos = 0.75 * 4.5 + 0.25 * 3.5
    assert parts["similarity"] == pytest.approx(0.5)
    assert value == pytest.approx((0.5 * 0.8 + 0.5 * (mos - 1.5) / 3.0 + 1.0 * 0.5) / 2.0)
    assert composite({**m, "speaker_sim": 0.3}, "clone", s, "dvector")[1].startswith("voice does not match")
    assert composite({}, "tts", s) == (0.0, "no metric to score with", {})


# ---- fuzzing: nothing raises, garbage scores 0 with a reason ------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_fuzz_bytes(fake_scoring, data):
    r = fake_scoring().score([ScoreItem(TEXT, data, uid=1)])[0]
    assert r.composite == 0.0 and r.reason


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=64), pos=st.integers(0, 10_000), wav=st.sampled_from(["wav", "flac"]))
def test_fuzz_corrupted_files(fake_scoring, voices, data, pos, wav):
    good = bytearray(audiolib.encode(voices["piper"][1], wav))
    pos = pos % len(good)
    good[pos:pos + len(data)] = data
    r = fake_scoring().score([ScoreItem(TEXT, bytes(good), uid=1)])[0]
    assert 0.0 <= r.composite <= 1.0
    assert (r.composite > 0) == (r.reason is None)


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(floats, max_size=2000), sr=st.sampled_from([1, 100, 8000, 16000, 22050, 48000, 192000]),
       scale=st.sampled_from([1e-6, 1.0, 1e6]), repeat=st.integers(1, 200))
def test_fuzz_arrays(fake_scoring, samples, sr, scale, repeat):
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.tile(np.asarray(samples, np.float32) * np.float32(scale), repeat)
    r = fake_scoring().score([ScoreItem(TEXT, Audio(x, sr), uid=1)])[0]
    assert 0.0 <= r.composite <= 1.0
    if r.composite == 0:
        assert r.reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), task=st.sampled_from(["tts", "clone", "bogus"]),
       audio=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=64)))
def test_fuzz_item_fields(fake_scoring, text, task, audio):
    r = fake_scoring().score([ScoreItem(text, audio, task=task)])[0]  # type: ignore[arg-type]
    assert r.composite == 0.0 and r.reason
