"""SpeechT5 + HiFi-GAN engine through its real loading code, on a tiny random model saved to disk."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from audiosubnet.bench.random_models import build_speecht5  # noqa: E402
from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest  # noqa: E402
from audiosubnet.engines.speecht5 import SPEAKERS_DIR, preset_index  # noqa: E402
from audiosubnet.errors import InputError  # noqa: E402

TEXTS = ["Hello there.", "A longer sentence, with 12 words and some punctuation!", "Hi"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_speecht5(tmp_path_factory.mktemp("st5") / "speecht5-tiny")


@pytest.fixture
def engine(lease, folder):
    with lease(f"hf:{folder}") as e:
        e.maxlenratio = 6.0  # at most 3 decoder steps per token: keeps the tiny runs short
        yield e
        e.threshold, e.minlenratio, e.maxlenratio = 0.5, 0.0, 20.0


def synth(engine, texts, seed=3, **kw):
    return engine.synthesize([SynthesisRequest(t, seed=seed, **kw) for t in texts])


def test_ids_and_vocoder_lookup(folder):
    assert registry.parse_model_id(f"hf:{folder}") == ("speecht5", str(folder))
    engine = registry.create(f"speecht5:{folder}")
    assert engine.repos() == [str(folder), str(folder / "hifigan")]
    named = registry.create(f"speecht5:{folder}+/elsewhere/vocoder")
    assert named.repos() == [str(folder), "/elsewhere/vocoder"]
    assert registry.create("speecht5").repos()[1] == "microsoft/speecht5_hifigan"


def test_loads_with_capabilities(engine):
    caps = engine.capabilities
    assert engine.loaded and caps.sample_rate == 16000 and caps.batching and caps.seedable
    assert caps.max_batch == 8 and caps.open_voices
    assert set(caps.voices) == set(preset_index()) and caps.default_voice == "slt"
    assert engine.memory_bytes() > 0


def test_batched_items_equal_unbatched(engine):
    single = [synth(engine, [t])[0] for t in TEXTS]
    batched = synth(engine, TEXTS)
    assert len({len(a.samples) for a in single}) > 1
    for a, b in zip(single, batched, strict=True):
        assert b.sample_rate == 16000
        assert len(a.samples) == len(b.samples) and len(b.samples) % 256 == 0
        assert np.allclose(a.samples, b.samples, atol=1e-4)
        assert np.abs(b.samples).max() > 0.05


def test_lengths_follow_each_items_own_limits(engine):
    engine.threshold = 2.0  # the stop head never fires: every item runs to its own maxlen
    ids = [engine._token_ids(t) for t in TEXTS]
    out = synth(engine, TEXTS)
    for tokens, audio in zip(ids, out, strict=True):
        steps = int(len(tokens) * engine.maxlenratio / 2)
        assert len(audio.samples) == steps * 2 * 256


def test_seeds_reproduce_and_differ(engine):
    a, b = synth(engine, TEXTS[:1], seed=5)[0], synth(engine, TEXTS[:1], seed=5)[0]
    c = synth(engine, TEXTS[:1], seed=6)[0]
    assert np.allclose(a.samples, b.samples)
    n = min(len(a.samples), len(c.samples))
    assert len(a.samples) != len(c.samples) or not np.allclose(a.samples[:n], c.samples[:n])


def test_decoder_matches_transformers_generate(engine):
    """Our decode loop == SpeechT5ForTextToSpeech.generate_speech given the same prenet dropout masks."""
    from transformers.models.speecht5 import modeling_speecht5 as ms

    model, seed = engine._model, 9
    engine.minlenratio, engine.maxlenratio, engine.threshold = 1.0, 4.0, 0.5
    ids = engine._token_ids(TEXTS[0])
    spk = engine._speaker("slt")
    ours, frames = engine.spectrogram([ids], [spk], [seed])

    # the masks our loop drew: each item's generator, `dropout_chunk` steps at a time
    p, n_pre = model.config.speech_decoder_prenet_dropout, model.config.speech_decoder_prenet_layers
    g = torch.Generator().manual_seed(seed)
    shape = (engine.dropout_chunk, n_pre, model.config.speech_decoder_prenet_units)
    masks = torch.cat([torch.rand(shape, generator=g) >= p for _ in range(4)]).float()
    calls = {"n": 0}

    def pinned(self, x, p):
        step, layer = divmod(calls["n"], n_pre)
        calls["n"] += 1
        mask = torch.zeros_like(x[0])
        mask[-1] = masks[step, layer]
        return torch.where(mask.unsqueeze(0) == 1, x, 0) / (1 - p)

    original = ms.SpeechT5SpeechDecoderPrenet._consistent_dropout
    ms.SpeechT5SpeechDecoderPrenet._consistent_dropout = pinned
    try:
        with torch.inference_mode():
            ref = model.generate_speech(torch.tensor([ids]), spk[None], threshold=0.5, minlenratio=1.0,
                                        maxlenratio=4.0)
            ref_wave = engine._vocoder(ref)
    finally:
        ms.SpeechT5SpeechDecoderPrenet._consistent_dropout = original
    assert frames == [ref.shape[0]]
    assert torch.allclose(ours[0, : frames[0]], ref, atol=1e-4)
    with torch.inference_mode():
        ours_wave = engine.synthesize([SynthesisRequest(TEXTS[0], seed=seed, voice="slt")])[0].samples
    assert np.allclose(ours_wave, ref_wave.numpy(), atol=1e-4)


def test_voice_by_path_and_bad_voices(engine, tmp_path):
    vec = np.load(SPEAKERS_DIR / "bdl.npy")
    path = tmp_path / "me.npy"
    np.save(path, vec)
    by_path = synth(engine, TEXTS[:1], voice=str(path))[0]
    by_name = synth(engine, TEXTS[:1], voice="bdl")[0]
    assert np.allclose(by_path.samples, by_name.samples)
    other = synth(engine, TEXTS[:1], voice="slt")[0]
    n = min(len(other.samples), len(by_name.samples))
    assert not np.allclose(other.samples[:n], by_name.samples[:n])
    with pytest.raises(InputError):
        engine.check(SynthesisRequest("Hi", voice="nobody"))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(7, dtype=np.float32))
    with pytest.raises(InputError):
        synth(engine, ["Hi"], voice=str(bad))


def test_speed_retimes(engine):
    engine.threshold = 2.0
    base, slow = synth(engine, [TEXTS[1]])[0], synth(engine, [TEXTS[1]], speed=0.5)[0]
    assert abs(len(slow.samples) / len(base.samples) - 2.0) < 0.05


def test_too_many_tokens_is_an_input_error(engine):
    with pytest.raises(InputError):
        engine.check(SynthesisRequest("word " * 70))  # 350 characters, > 300 positions of the tiny model


def test_shipped_presets_are_documented():
    index = preset_index()
    assert {"slt", "bdl", "clb", "rms", "ksp", "awb", "jmk"} <= set(index)
    assert (SPEAKERS_DIR / "README.md").is_file()
    for name, entry in index.items():
        vec = np.load(SPEAKERS_DIR / entry["file"])
        assert vec.shape == (512,) and vec.dtype == np.float32, name
        assert entry.get("source")
