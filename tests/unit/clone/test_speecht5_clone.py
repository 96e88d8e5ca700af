"""`speecht5-clone` through its real loading code: tiny random SpeechT5 + HiFi-GAN + WavLM x-vector models
saved with save_pretrained (the Hub is unreachable here)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from audiosubnet.audio import Audio  # noqa: E402
from audiosubnet.bench.random_models import build_speecht5  # noqa: E402
from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest as R  # noqa: E402
from audiosubnet.engines.registry import EngineCache  # noqa: E402
from audiosubnet.errors import EngineError, InputError, ModelNotDownloadedError  # noqa: E402


def build_tiny_xvector(path, dim: int = 512, seed: int = 0):
    """A WavLMForXVector with the published structure, tiny widths, random weights."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(seed)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(32, 32), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
                      xvector_output_dim=dim, num_buckets=32, max_bucket_distance=64)
    WavLMForXVector(cfg).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = build_speecht5(tmp_path_factory.mktemp("st5c") / "speecht5-tiny")
    build_tiny_xvector(f / "xvector")
    return f


@pytest.fixture
def engine(folder, monkeypatch):
    monkeypatch.setenv("ASN_TORCH_THREADS", "1")
    cache = EngineCache(device="cpu", dtype="float32")  # the engine leases its x-vector encoder from it
    with cache.engine(f"speecht5-clone:{folder}") as e:
        e.inner.maxlenratio = 6.0  # keeps the tiny decoder's runs short
        yield e
    cache.clear()


def tone(f0: float, seconds: float = 1.5, sr: int = 16000) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr)


def test_ids_and_the_encoder_lookup(folder, monkeypatch):
    e = registry.create(f"speecht5-clone:{folder}")
    assert e.xvector_repo() == str(folder / "xvector")
    assert registry.create("speecht5-clone").xvector_repo() == "microsoft/wavlm-base-plus-sv"
    monkeypatch.setenv("ASN_SPEECHT5_XVECTOR", "/models/my-xvector")
    assert registry.create("speecht5-clone").xvector_repo() == "/models/my-xvector"


def test_clones_with_the_references_xvector(engine):
    from audiosubnet.scoring import speaker

    assert engine.capabilities.clone and engine.capabilities.sample_rate == 16000
    low, high = tone(110), tone(240)
    reqs = [R("Hello there.", reference=low, seed=1), R("Hello there.", reference=high, seed=1),
            R("Hello there.", reference=low, seed=1), R("Hello there.", seed=1)]
    out = engine.synthesize(reqs)
    assert all(a.duration > 0 and np.isfinite(a.samples).all() for a in out)
    assert np.allclose(out[0].samples, out[2].samples, atol=1e-5)  # same reference, same seed: same voice
    assert len(out[0].samples) != len(out[1].samples) or not np.allclose(out[0].samples, out[1].samples, atol=1e-3)
    # the vector handed to SpeechT5 is the encoder's embedding of the reference
    with speaker.lease(engine.cache, f"hf:{engine.xvector_repo()}") as enc:  # the scorer, its own instance
        expect = enc.embed([low])[0]
    assert np.allclose(engine.xvectors([low])[0], expect, atol=1e-5)
    assert len(engine._xvectors) == 2  # two distinct references, each embedded once


def test_a_batch_equals_one_by_one(engine):
    refs = [tone(120), tone(200)]
    reqs = [R("One two three.", reference=refs[0], seed=5), R("Four five.", reference=refs[1], seed=5)]
    batched = engine.synthesize(reqs)
    single = [engine.synthesize([r])[0] for r in reqs]
    for a, b in zip(batched, single, strict=True):
        assert len(a.samples) == len(b.samples) and np.allclose(a.samples, b.samples, atol=1e-4)


def test_bad_references_and_dimension_mismatch(engine, folder, tmp_path):
    with pytest.raises(InputError, match="shorter than 0.5 s"):
        engine.synthesize([R("Hi there.", reference=tone(150, 0.2))])
    bad = build_tiny_xvector(tmp_path / "xv256", dim=256)
    engine.xvector_repo = lambda: str(bad)
    with pytest.raises(EngineError, match="256-dim"):
        engine.synthesize([R("Hi there.", reference=tone(150))])


def test_a_missing_encoder_fails_at_load_time(tmp_path, monkeypatch):
    f = build_speecht5(tmp_path / "st5-noxv")
    monkeypatch.setenv("ASN_SPEECHT5_XVECTOR", "some-org/not-downloaded-xvector")
    cache = EngineCache(device="cpu", dtype="float32")
    with pytest.raises(ModelNotDownloadedError), cache.engine(f"speecht5-clone:{f}"):
        pass
