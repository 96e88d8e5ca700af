"""The MusicGen engine on a tiny random model: lengths, seeds alone vs in a batch, checks, registry."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.engines import registry
from audiosubnet.engines.music import MusicRequest, music_engine_check
from audiosubnet.errors import InputError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_musicgen):
    from audiosubnet.engines.musicgen import MusicgenEngine

    e = MusicgenEngine(str(tiny_musicgen))
    e.setup("cpu")
    yield e
    e.unload()


def test_registry_finds_musicgen_by_entry_point_and_folder(tiny_musicgen):
    assert registry.parse_model_id("musicgen") == ("musicgen", "facebook/musicgen-small")
    assert registry.parse_model_id("hf:facebook/musicgen-medium")[0] == "musicgen"
    assert registry.parse_model_id(f"hf:{tiny_musicgen}")[0] == "musicgen"


def test_capabilities_say_music_not_speech(engine):
    caps = engine.capabilities
    assert caps.music and not caps.tts and caps.sample_rate == 32000 and caps.max_duration_s == 30
    music_engine_check(engine)
    assert engine.max_new_tokens(10) == 500 + 3  # 50 frames/s from the config, plus the codebook delay


def test_length_seed_and_batch_independence(engine):
    alone = engine.synthesize([MusicRequest("lo-fi beat with soft piano", duration_s=1.0, seed=3)])[0]
    assert alone.sample_rate == 32000 and len(alone.samples) == 32000
    assert np.isfinite(alone.samples).all() and np.abs(alone.samples).max() > 1e-3
    batch = engine.synthesize([MusicRequest("jazz trio", duration_s=0.6, seed=4),
                               MusicRequest("lo-fi beat with soft piano", duration_s=1.0, seed=3)])
    assert len(batch[0].samples) == int(0.6 * 32000)
    np.testing.assert_allclose(batch[1].samples, alone.samples, atol=1e-4)  # same seed, same music in a batch
    other = engine.synthesize([MusicRequest("lo-fi beat with soft piano", duration_s=1.0, seed=5)])[0]
    assert np.abs(other.samples - alone.samples).max() > 1e-3


@pytest.mark.parametrize("req, msg", [
    (MusicRequest(" ", duration_s=1), "empty prompt"),
    (MusicRequest("x" * 257, duration_s=1), "at most 256"),
    (MusicRequest("beat", duration_s=31), "outside"),
    (MusicRequest("beat", duration_s=float("nan")), "outside"),
])
def test_bad_requests_are_input_errors(engine, req, msg):
    with pytest.raises(InputError, match=msg):
        engine.synthesize([req])


def test_speech_engine_is_refused_for_music():
    e = registry.create("fake:default")
    with pytest.raises(InputError, match="not a text-to-music model"):
        music_engine_check(e)


def test_fast_path_seeds_per_item_and_lengths(engine):
    engine.fast = "on"  # the CUDA path, run eagerly on the CPU
    try:
        alone = engine.synthesize([MusicRequest("lo-fi beat with soft piano", duration_s=0.6, seed=3)])[0]
        batch = engine.synthesize([MusicRequest("jazz trio", duration_s=0.5, seed=4),
                                   MusicRequest("lo-fi beat with soft piano", duration_s=0.6, seed=3)])
        again = engine.synthesize([MusicRequest("lo-fi beat with soft piano", duration_s=0.6, seed=3)])[0]
    finally:
        engine.fast = "auto"
    assert len(alone.samples) == int(0.6 * 32000) and len(batch[0].samples) == 16000
    np.testing.assert_allclose(again.samples, alone.samples, atol=1e-6)  # a reused runner starts clean
    np.testing.assert_allclose(batch[1].samples, alone.samples, atol=1e-4)  # own noise: same alone or in a batch
    assert engine.memory_bytes() > 0 and engine._runners  # the runner's buffers are counted
