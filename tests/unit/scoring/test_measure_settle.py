"""`Scoring.measure` then `Scoring.settle` (the two halves `asn score DIR --ray` runs on replicas and the driver)
give what `Scoring.score` gives, batch after batch, under every duplicate policy (fake scorers, no Ray)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import pytest

from audiosubnet import audio as audiolib
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.registry import EngineCache
from audiosubnet.scoring import ScoreItem, Scorer, Scoring


class WordAsr(Scorer):
    name, metrics = "asr", ("wer", "cer")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score_details(self, items: Sequence[ScoreItem]):
        if any("boom" in it.text for it in items):
            raise RuntimeError("boom")
        wer = [0.0 if len(it.text) % 2 else 0.25 for it in items]
        return [{"wer": w, "cer": w / 2} for w in wer], [{"transcript": it.text.lower()} for it in items]

    def score(self, items):
        return self.score_details(items)[0]


class LevelMos(Scorer):
    name, metrics = "dnsmos", ("dnsmos_ovrl", "dnsmos_p808")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"dnsmos_ovrl": 3.0 + float(abs(it.audio.samples).mean()), "dnsmos_p808": 3.5} for it in items]


def make(policy: str) -> Scoring:
    return Scoring(ScoreSettings(preset="offline", duplicate_policy=policy), cache=EngineCache(None, "cpu", "float32"),
                   scorers=[WordAsr, LevelMos])


@pytest.mark.parametrize("policy", ["share", "first", "all"])
def test_measure_then_settle_is_score(voices, degenerate, policy):
    p = voices["piper"]
    t = [f"text {i}" for i in range(4)]
    texts = ["Can you believe it's already the end of November?", "The quick brown fox jumps over the lazy dog.",
             "Please remember to bring your umbrella tomorrow morning."]
    copy = audiolib.encode(audiolib.resample(p[0], 16000), "mp3")
    batches = [  # copies inside a batch and of earlier batches; bad items; a scorer failing on one item
        [ScoreItem(texts[0], p[0], id="a"), ScoreItem(texts[1], p[1], id="b"), ScoreItem(texts[0], copy, id="c")],
        [ScoreItem(texts[1], audiolib.encode(p[1], "wav"), id="d"), ScoreItem(texts[2], p[2], id="e"),
         ScoreItem(t[0], degenerate["silence"], id="f"), ScoreItem(texts[2] + " boom", p[2], id="g")],
        [ScoreItem(texts[0], p[0], id="h", elapsed_s=2.0), ScoreItem(texts[0], copy, id="i", elapsed_s=1.0),
         ScoreItem(t[1], b"junk", id="j")],
    ]
    local, split = make(policy), make(policy)
    want = [r.to_dict() for b in batches for r in local.score(b)]
    got = []
    for b in batches:
        work = pickle.loads(pickle.dumps(split.measure(b)))  # what travels from a replica to the driver
        assert all(w.item.audio is None and w.x16 is None for w in work)  # no audio travels
        got += [r.to_dict() for r in split.settle(work)]
    assert got == want
    by_id = {r["id"]: r for r in got}
    assert by_id["d"]["duplicate_of"] and by_id["c"]["duplicate_of"]  # copies found (of earlier and of this batch)
    assert "silent" in by_id["f"]["reason"] and "scorer asr failed" in by_id["g"]["reason"]
    if policy != "share":  # a copy keeps none of what the models measured on it, as score never measures it
        assert by_id["d"]["composite"] == 0 and "wer" not in by_id["d"]["metrics"]
        assert by_id["d"]["transcript"] is None
    assert local.history.round == split.history.round == 3
