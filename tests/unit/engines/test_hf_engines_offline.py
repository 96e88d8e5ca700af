"""The transformers engines without their weights: ids, catalog/status, and the offline error."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("transformers")

from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.registry import EngineCache  # noqa: E402
from audiosubnet.errors import ModelNotDownloadedError  # noqa: E402

HUB_IDS = ["mms:facebook/mms-tts-eng", "speecht5:microsoft/speecht5_tts", "bark:suno/bark-small"]


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """An empty HF cache and a Hub endpoint that refuses connections at once (no real network)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("ASN_SPEECHT5_VOCODER", "microsoft/speecht5_hifigan")
    return tmp_path


@pytest.mark.parametrize(("model_id", "engine"), [
    ("hf:facebook/mms-tts-eng", "mms"),
    ("hf:facebook/mms-tts-deu", "mms"),
    ("mms:facebook/mms-tts-fra", "mms"),
    ("hf:microsoft/speecht5_tts", "speecht5"),
    ("speecht5", "speecht5"),
    ("hf:suno/bark", "bark"),
    ("hf:suno/bark-small", "bark"),
])
def test_model_ids_choose_the_engine(model_id, engine):
    assert registry.parse_model_id(model_id)[0] == engine
    assert registry.canonical_id(model_id).startswith(f"{engine}:")


def test_defaults_and_catalog():
    assert registry.canonical_id("mms") == "mms:facebook/mms-tts-eng"
    assert registry.canonical_id("bark") == "bark:suno/bark-small"
    for name in ("mms", "speecht5", "bark"):
        cls = registry.get_engine_class(name)
        assert cls.default_model in cls.catalog()


@pytest.mark.parametrize("model_id", HUB_IDS)
def test_missing_model_fails_fast_naming_pull(empty_hub, model_id):
    cache = EngineCache(device="cpu")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotDownloadedError) as err, cache.engine(model_id):
        pass
    assert time.perf_counter() - t0 < 5
    assert "asn models pull" in err.value.hint
    assert model_id in err.value.hint
    assert cache.loaded() == []


@pytest.mark.parametrize("model_id", HUB_IDS)
def test_offline_flag_status_and_estimate(empty_hub, monkeypatch, model_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = registry.create(model_id)
    with pytest.raises(ModelNotDownloadedError):
        engine.setup("cpu", "float32")
    status = type(engine).status(engine.model)
    assert not status.downloaded
    assert engine.estimate_bytes() > 10 * 2**20  # from known sizes, before any download
    caps = engine.capabilities  # metadata only: works without the files
    assert caps.sample_rate in (16000, 24000)
    assert caps.seedable
