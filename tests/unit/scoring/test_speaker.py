"""Speaker similarity with the offline encoders: one voice reading two sentences is closer than two
voices reading one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.scoring import ScoreItem, Scoring, speaker

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", ["dvector", "ge2e"])
def test_same_voice_beats_different_voices(cache, voices, model):
    piper, espeak, f3 = voices["piper"], voices["espeak"], voices["espeak_f3"]
    e = speaker.embed([piper[0], piper[1], espeak[0], espeak[1], f3[0], f3[1]], cache, model=model)
    sim = e @ e.T
    same = {"piper": sim[0, 1], "espeak": sim[2, 3], "espeak+f3": sim[4, 5]}
    different = {"piper/espeak": sim[0, 2], "piper/espeak+f3": sim[0, 4], "espeak/espeak+f3": sim[2, 4]}
    print(model, "same voice, two sentences:", {k: round(float(v), 3) for k, v in same.items()},
          "| one sentence, two voices:", {k: round(float(v), 3) for k, v in different.items()})
    assert min(same.values()) > max(different.values())


def test_embed_contract(cache, voices):
    clips = voices["piper"][:3]
    e = speaker.embed(clips, cache)
    assert e.shape == (3, 256) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    again = speaker.embed([clips[1]], cache)
    assert np.allclose(again[0], e[1], atol=1e-5)  # batching does not change an embedding
    assert speaker.similarity(clips[0], clips[0], cache) == pytest.approx(1.0, abs=1e-5)
    assert speaker.canonical_model("auto", "cpu") == "dvector"
    assert speaker.canonical_model("auto", "cuda") == "hf:microsoft/wavlm-base-plus-sv"


def test_clone_task_scores_similarity(cache, settings_offline, voices, prompts):
    piper, f3 = voices["piper"], voices["espeak_f3"]
    res = Scoring(settings_offline, cache=cache).score([
        ScoreItem(prompts[1], piper[1], task="clone", reference=piper[0], uid=1),  # same voice
        ScoreItem(prompts[2], piper[2], task="clone", reference=f3[2], uid=2),  # another voice
    ], remember=False)
    print("clone: same voice", res[0].metrics["speaker_sim"], res[0].composite,
          "| other voice", res[1].metrics["speaker_sim"], res[1].composite, res[1].reason)
    assert res[0].metrics["speaker_sim"] > res[1].metrics["speaker_sim"]
    assert res[0].composite > 0.5
    assert res[1].composite == 0 and "voice" in res[1].reason
