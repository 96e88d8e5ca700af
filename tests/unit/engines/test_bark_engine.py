"""Bark engine through its real loading code, on a tiny random Bark (BERT vocab + .npy presets) on disk."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from audiosubnet.bench.random_models import BARK_VOICES, build_bark  # noqa: E402
from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest  # noqa: E402
from audiosubnet.errors import InputError  # noqa: E402

TEXTS = ["Hello world.", "This is a test of the speech.", "Hi"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_bark(tmp_path_factory.mktemp("bark") / "bark-tiny")


@pytest.fixture
def engine(lease, folder):
    with lease(f"bark:{folder}") as e:
        yield e


def synth(engine, texts, seed=1, **kw):
    return engine.synthesize([SynthesisRequest(t, seed=seed, **kw) for t in texts])


def test_ids(folder):
    assert registry.parse_model_id(f"hf:{folder}") == ("bark", str(folder))


def test_loads_with_presets(engine):
    caps = engine.capabilities
    assert engine.loaded and caps.sample_rate == 24000 and caps.seedable
    assert set(caps.voices) == set(BARK_VOICES) and caps.default_voice == "v2/en_speaker_6"
    assert not caps.batching and caps.max_text_chars <= 250
    assert engine.memory_bytes() > 0


def test_batch_items_equal_single_runs(engine):
    batched = synth(engine, TEXTS)
    single = [synth(engine, [t])[0] for t in TEXTS]
    for a, b in zip(single, batched, strict=True):
        assert b.sample_rate == 24000 and len(a.samples) == len(b.samples) > 0
        assert np.allclose(a.samples, b.samples, atol=1e-5)


def test_seeds_and_voices_change_the_audio(engine):
    a, b = synth(engine, TEXTS[:1], seed=4)[0], synth(engine, TEXTS[:1], seed=4)[0]
    c = synth(engine, TEXTS[:1], seed=5)[0]
    d = synth(engine, TEXTS[:1], seed=4, voice="v2/en_speaker_0")[0]
    assert np.allclose(a.samples, b.samples)
    for other in (c, d):
        n = min(len(a.samples), len(other.samples))
        assert not np.allclose(a.samples[:n], other.samples[:n])


def test_seeding_leaves_the_global_rng_alone(engine):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    synth(engine, TEXTS[:1])
    assert torch.equal(torch.rand(3), expected)


def test_npz_voice_path(engine, folder, tmp_path):
    prompts = {k: np.load(folder / f"speaker_embeddings/v2/en_speaker_0_{k}.npy")
               for k in ("semantic_prompt", "coarse_prompt", "fine_prompt")}
    np.savez(tmp_path / "me.npz", **prompts)
    by_path = synth(engine, TEXTS[:1], voice=str(tmp_path / "me.npz"))[0]
    by_name = synth(engine, TEXTS[:1], voice="v2/en_speaker_0")[0]
    assert np.allclose(by_path.samples, by_name.samples)


@pytest.mark.parametrize("request_kw", [dict(voice="v2/nobody"), dict(speed=1.5), dict(text="x" * 400)])
def test_bad_requests(engine, request_kw):
    kw = {"text": "Hello.", **request_kw}
    with pytest.raises(InputError):
        engine.check(SynthesisRequest(**kw))
