"""The pipeline's contract with fake scorers (fast): order of checks, duplicates across miners and
rounds, error isolation, versions; and fuzzing: nothing an item holds makes `score` raise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.registry import EngineCache
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
        return [{"wer": 0.0 if "wrong" not in it.text else 1.0, "cer": 0.0,
                 "relatedness": 1.0 if "wrong" not in it.text else 0.0} for it in items]


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
        return Scoring(settings or ScoreSettings(preset="offline"), cache=EngineCache(None, "cpu", "float32"),
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
    assert res[0].composite == pytest.approx(1.0 * (0.5 * 1.0 + 0.5 * (4.0 - 1.5) / 3.0))
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
    # the default policy: the copy and the original share one score; another miner's own answer keeps its own
    assert [r.reason for r in res] == [None] * 4
    assert res[0].duplicate_of == "uid 1" and res[0].metrics["copies"] == 2 and "fingerprint_distance" in res[0].metrics
    assert res[0].composite == pytest.approx(res[3].composite / 2, rel=1e-6)
    assert res[1].composite == pytest.approx(res[3].composite / 2, rel=1e-6)
    assert res[2].composite == pytest.approx(res[3].composite / 2, rel=1e-6)  # the same miner twice counts once
    assert "copies" not in res[3].metrics

    s = fake_scoring(ScoreSettings(preset="offline", duplicate_policy="first"))
    res = s.score([ScoreItem(TEXT, copy, uid=2, elapsed_s=3.0), ScoreItem(TEXT, a, uid=1, elapsed_s=1.0)])
    assert res[1].reason is None and res[0].composite == 0 and res[0].duplicate_of == "uid 1"
    assert "copy" in res[0].reason

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
    # the copy shares with the earlier answer and with the honest miner's answer now (one miner: counted once)
    assert res[0].reason is None and res[0].metrics["copies"] == 2 and res[1].metrics["copies"] == 2
    assert res[0].composite == pytest.approx(res[1].composite, rel=1e-6)
    assert res[1].reason is None
    assert s2.history.round == 2
    # the copy was not remembered: the honest miner answering again later is still not a copier
    later = s2.score([ScoreItem(TEXT, audiolib.encode(a, "flac"), hotkey="5Honest")])[0]
    assert later.reason is None and "copies" not in later.metrics
    strict = fake_scoring(ScoreSettings(preset="offline", duplicate_policy="first"),
                          history=FingerprintHistory.load(path))
    res = strict.score([ScoreItem(TEXT, copy, hotkey="5Copier", uid=9)])
    assert res[0].composite == 0 and "earlier answer" in res[0].reason


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
    assert res[3].composite == 0 and "not speech of the prompt" in res[3].reason and not res[3].error


def test_profile_follows_settings(fake_scoring):
    a, b = fake_scoring(), fake_scoring()
    assert a.version == b.version
    c = fake_scoring(ScoreSettings(preset="offline", wer_zero=0.8))
    assert c.version != a.version and c.version.startswith(SCORING_VERSION + "+")


def test_composite_formula():
    s = ScoreSettings()
    m = {"wer": 0.1, "relatedness": 0.9, "dnsmos_ovrl": 3.0, "dnsmos_p808": 4.0}
    value, reason, parts = composite(m, "tts", s)
    assert reason is None and parts["intelligibility"] == pytest.approx(0.9)
    assert value == pytest.approx(0.9 * (0.5 * 0.9 + 0.5 * (3.5 - 1.5) / 3.0))
    # graded: no cliff anywhere in WER for speech of the prompt; intelligibility scales the rest
    curve = [composite({**m, "wer": w}, "tts", s)[0] for w in np.linspace(0, 1.2, 49)]
    assert all(a >= b for a, b in zip(curve, curve[1:], strict=False)) and curve[-1] == 0
    steps = np.abs(np.diff(curve))
    assert steps.max() < 0.05 and composite({**m, "wer": 0.55}, "tts", s)[0] > 0.1
    # the separate test: another sentence scores 0 whatever its WER
    value, reason, _ = composite({**m, "wer": 0.7, "relatedness": 0.1}, "tts", s)
    assert value == 0 and reason.startswith("not speech of the prompt")
    value, reason, parts = composite({**m, "utmos": 4.5, "speaker_sim": 0.675}, "clone", s, "dvector")
    mos = 0.75 * 4.5 + 0.25 * 3.5
    assert parts["similarity"] == pytest.approx(0.5)
    assert value == pytest.approx(0.9 * (0.5 * 0.9 + 0.5 * (mos - 1.5) / 3.0 + 1.0 * 0.5) / 2.0)
    assert composite({**m, "speaker_sim": 0.3}, "clone", s, "dvector")[1].startswith("voice does not match")
    assert composite({}, "tts", s) == (0.0, "no metric to score with", {})
