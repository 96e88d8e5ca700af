"""Music scoring with real signals: sanity gates (tones, noise, silence, clipping, DC, NaN, lengths),
duplicates across miners and rounds, KID/relevance math, and quality ranking on a tiny random CLAP."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import ConfigError, ModelNotDownloadedError
from audiosubnet.scoring.music import MusicItem, MusicScoring, MusicScoringConfig, kid, rank_relevance
from audiosubnet.scoring.music_sanity import check_music

SR = 32000


def melody(seed: int, seconds: float = 1.0, sr: int = SR) -> Audio:
    """Random notes (two octaves above A3) of 125 ms with attack/decay envelopes."""
    rng = np.random.default_rng(seed)
    n = int(0.125 * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, np.linspace(0, 8, n)) * np.linspace(1.0, 0.3, n)
    notes = [0.3 * env * np.sin(2 * np.pi * 220 * 2 ** (rng.integers(0, 24) / 12) * t)
             for _ in range(int(seconds / 0.125))]
    return Audio(np.concatenate(notes).astype(np.float32), sr)


def noise(seed: int, seconds: float = 1.0) -> Audio:
    return Audio((0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32), SR)


# ---- sanity --------------------------------------------------------------------------------------
def test_sanity_passes_music_and_penalizes_every_shortfall():
    why, factor, info = check_music(melody(1, 2.0), 2.0)
    assert why is None and factor == 1.0 and info["active_fraction"] > 0.9
    why, factor, _ = check_music(melody(1, 1.75), 2.0)
    assert why is None and factor == pytest.approx(0.875)  # 12.5% short: 12.5% off, no free tolerance
    assert check_music(melody(1, 2.0), 1.0)[0] is None  # a little longer is cut, not failed


@pytest.mark.parametrize("make, requested, reason", [
    (lambda: Audio(np.zeros(SR, np.float32), SR), 1.0, "silent"),
    (lambda: Audio(np.concatenate([melody(2, 0.25).samples, np.zeros(int(0.75 * SR), np.float32)]), SR), 1.0,
     "mostly silent"),
    (lambda: Audio(np.sign(np.sin(2 * np.pi * 100 * np.arange(SR) / SR)).astype(np.float32), SR), 1.0, "clipped"),
    (lambda: Audio(melody(3).samples + 0.2, SR), 1.0, "DC offset"),
    (lambda: Audio(np.where(np.arange(SR) == 500, np.nan, melody(4).samples).astype(np.float32), SR), 1.0, "NaN"),
    (lambda: melody(5, 0.4), 1.0, "asked for"),
    (lambda: melody(5, 4.0), 1.0, "asked for"),
    (lambda: Audio(melody(6).samples[::4].copy(), 8000), 0.25, "sample rate"),
    (lambda: Audio(np.zeros(0, np.float32), SR), 1.0, "empty"),
])
def test_sanity_gates_with_real_signals(make, requested, reason):
    why, factor, _ = check_music(make(), requested)
    assert why is not None and reason in why and factor == 0.0


# ---- metrics -------------------------------------------------------------------------------------
def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = unit(rng.standard_normal((40, 16))), unit(rng.standard_normal((40, 16)))
    shifted = unit(rng.standard_normal((40, 16)) + 1.5)
    assert abs(kid(a, b)) < 0.05 < kid(a, shifted)
    with pytest.raises(ValueError):
        kid(a[:1], b)


def test_rank_relevance():
    own = np.array([0.9, 0.1, 0.5])
    decoys = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.1]])
    assert rank_relevance(own, decoys).tolist() == [1.0, 0.0, 0.625]


# ---- the scorer on a tiny CLAP -------------------------------------------------------------------
@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("private_refs")
    for i in range(8):
        audiolib.write_atomic(d / f"ref{i}.wav", audiolib.encode(melody(100 + i), "wav"))
    return d


def scoring(tiny_clap, refs=None, **kw) -> MusicScoring:
    cfg = MusicScoringConfig(clap_model=str(tiny_clap), reference_dir=str(refs) if refs else None, min_window=4,
                             decoys=("white noise", "a choir", "drums", "a piano"), **kw)
    return MusicScoring(cfg, EngineCache(budget_bytes=None))


def wav(a: Audio) -> bytes:
    return audiolib.encode(a, "wav")


@pytest.mark.slow
def test_quality_window_ranks_music_above_noise(tiny_clap, refs):
    s = scoring(tiny_clap, refs)
    last = None
    for rnd in range(4):
        items = [MusicItem("calm melody with bells", wav(melody(rnd * 10 + 1)), 1.0, hotkey="tones", uid=1,
                           elapsed_s=1.0),
                 MusicItem("calm melody with bells", wav(noise(rnd)), 1.0, hotkey="noise", uid=2, elapsed_s=1.0)]
        last = s.score(items)
        if rnd < 3:  # a short window is neutral: never one clip against the references
            assert last[0].metrics["quality"] == last[1].metrics["quality"] == 0.5
    tones, hiss = last
    assert tones.reason is None and hiss.reason is None
    assert tones.metrics["kid"] < hiss.metrics["kid"]
    assert tones.metrics["quality"] > hiss.metrics["quality"] and tones.composite > hiss.composite
    for r in last:
        assert 0.0 <= r.metrics["relevance"] <= 1.0 and 0.0 <= r.composite <= 1.0


@pytest.mark.slow
def test_copies_score_zero_in_a_batch_and_across_rounds(tiny_clap):
    s = scoring(tiny_clap)
    original = melody(7, 1.0)
    louder = Audio(original.samples * 0.8, SR)  # a gain change is still a copy
    items = [MusicItem("jazz", wav(original), 1.0, hotkey="a", uid=1, elapsed_s=0.5),
             MusicItem("jazz", wav(louder), 1.0, hotkey="b", uid=2, elapsed_s=0.9),
             MusicItem("jazz", wav(melody(8, 1.0)), 1.0, hotkey="c", uid=3, elapsed_s=0.7)]
    a, b, c = s.score(items)
    assert a.reason is None and c.reason is None  # the fastest keeps its score; a different clip is fine
    assert b.composite == 0.0 and "copy of uid 1" in b.reason
    resampled = audiolib.resample(original, 24000)
    (later,) = s.score([MusicItem("jazz", wav(resampled), 1.0, hotkey="d", uid=4, elapsed_s=0.5)])
    assert later.composite == 0.0 and "earlier answer" in later.reason


@pytest.mark.slow
def test_failed_sanity_is_reported_and_not_embedded(tiny_clap):
    s = scoring(tiny_clap)
    silent, garbage, ok = s.score([MusicItem("x", wav(Audio(np.zeros(SR, np.float32), SR)), 1.0, uid=1),
                                   MusicItem("x", b"RIFF garbage", 1.0, uid=2),
                                   MusicItem("x", wav(melody(9, 0.875)), 1.0, uid=3)])
    assert "silent" in silent.reason and "undecodable" in garbage.reason
    assert ok.reason is None and ok.metrics["duration_factor"] == pytest.approx(0.875)
    assert s.windows.get("uid:1") is None and len(s.windows.get("uid:3")) == 1


def test_missing_clap_names_asn_models_pull():
    s = MusicScoring(MusicScoringConfig(clap_model="laion/larger_clap_music"), EngineCache(budget_bytes=None))
    with pytest.raises(ModelNotDownloadedError) as e:
        s.ensure_ready()
    assert "asn models pull clap:laion/larger_clap_music" in e.value.hint


def test_too_few_references_is_a_config_error(tiny_clap, tmp_path):
    (tmp_path / "one.wav").write_bytes(wav(melody(1)))
    with pytest.raises(ConfigError, match="at least 8"):
        scoring(tiny_clap, tmp_path).ensure_ready()
