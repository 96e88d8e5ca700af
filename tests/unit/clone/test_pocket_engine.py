"""`pocket` (Kyutai Pocket TTS) through its real loading code: the package's own model classes with random
weights, tiny widths (the real weights are on the Hub, unreachable here)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pocket_tts")

from audiosubnet.audio import Audio  # noqa: E402
from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest as R  # noqa: E402
from audiosubnet.engines.pocket import PocketCloneEngine, build_random_pocket, parse_hf_path  # noqa: E402
from audiosubnet.engines.registry import EngineCache  # noqa: E402
from audiosubnet.errors import InputError, ModelNotDownloadedError  # noqa: E402

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_random_pocket(tmp_path_factory.mktemp("pocket") / "tiny")


@pytest.fixture
def cache(monkeypatch):
    monkeypatch.setenv("ASN_TORCH_THREADS", "1")
    return EngineCache(device="cpu", dtype="float32")


def tone(f0: float, seconds: float = 1.5, sr: int = 16000) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    return Audio((0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)


def test_clones_from_a_local_folder(cache, folder):
    assert registry.parse_model_id(f"pocket:{folder}") == ("pocket", str(folder))
    with cache.engine(f"pocket:{folder}") as e:
        caps = e.capabilities
        assert caps.clone and not caps.tts and caps.sample_rate == 24000 and caps.seedable
        a, b = tone(120), tone(220)
        out = e.synthesize([R("Hello there.", reference=a, seed=3), R("Hello there.", reference=b, seed=3),
                            R("Hello there.", reference=a, seed=3)])
        assert all(o.sample_rate == 24000 and o.duration > 0 and np.isfinite(o.samples).all() for o in out)
        assert len(out[0].samples) == len(out[2].samples)  # same reference and seed: same audio
        assert np.allclose(out[0].samples, out[2].samples, atol=1e-4)
        assert len(e._states) == 2  # one voice state per distinct reference
        # the reference reaches the model: the two voice states differ, and so does the audio
        sa, sb = (e._states[k] for k in e._states)
        assert any(not torch.allclose(x, y) for x, y in zip(_tensors(sa), _tensors(sb), strict=True))
        assert not np.array_equal(out[0].samples, out[1].samples)
        with pytest.raises(InputError, match="needs a reference"):
            e.synthesize([R("Hello.")])
        assert e.memory_bytes() > 0
        e.warmup()


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


def _fake_hf_cache(tmp_path, folder, monkeypatch):
    """The tiny model's files laid out as the HF cache holds a downloaded `kyutai/pocket-tts` snapshot."""
    import yaml

    hub_dir = tmp_path / "hf" / "hub"
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_dir))  # read at call time
    repo = hub_dir / "models--kyutai--pocket-tts"
    snap = repo / "snapshots" / REV / "languages" / "english"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    for name in ("model.safetensors", "tokenizer.json"):
        shutil.copy(folder / name, snap / name)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["weights_path"] = f"hf://kyutai/pocket-tts/languages/english/model.safetensors@{REV}"
    cfg["weights_path_without_voice_cloning"] = "hf://kyutai/pocket-tts-without-voice-cloning/x.safetensors"
    cfg["flow_lm"]["lookup_table"]["tokenizer_path"] = f"hf://kyutai/pocket-tts/languages/english/tokenizer.json@{REV}"
    conf = tmp_path / "hub-config.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    return conf, snap


def test_hub_paths_resolve_from_the_cache_offline(cache, folder, tmp_path, monkeypatch):
    conf, snap = _fake_hf_cache(tmp_path, folder, monkeypatch)
    st = PocketCloneEngine.status(str(conf))
    assert st.downloaded and st.size_bytes and st.source == "HF cache"
    with cache.engine(f"pocket:{conf}") as e:
        assert e.synthesize([R("Hi there.", reference=tone(150), seed=1)])[0].duration > 0
    (snap / "model.safetensors").unlink()  # the cloning weights missing: never fall back, never hang
    assert not PocketCloneEngine.status(str(conf)).downloaded
    with pytest.raises(ModelNotDownloadedError, match="not in the Hugging Face cache"), \
            EngineCache(device="cpu").engine(f"pocket:{conf}"):
        pass


def test_the_published_model_is_not_here_offline_and_auto_falls_back_to_world():
    from audiosubnet.jobs.clone_watch import resolve_clone_model

    st = PocketCloneEngine.status("english")
    assert not st.downloaded and "CC-BY-4.0" in st.license
    assert set(PocketCloneEngine("english").files()) == {"weights_path", "flow_lm.lookup_table.tokenizer_path"}
    assert resolve_clone_model("auto") == "world"


def test_parse_hf_path():
    assert parse_hf_path("hf://kyutai/pocket-tts/languages/english/model.safetensors@abc") == (
        "kyutai/pocket-tts", "languages/english/model.safetensors", "abc")
    assert parse_hf_path("hf://org/repo/file.json") == ("org/repo", "file.json", None)


def test_missing_pocket_tts_names_the_hf_extra(monkeypatch):
    import sys

    from audiosubnet.engines import pocket
    from audiosubnet.errors import DependencyError

    monkeypatch.setitem(sys.modules, "pocket_tts", None)  # `import pocket_tts` raises ImportError
    with pytest.raises(DependencyError) as e:
        pocket._require()
    assert "pocket_tts" in e.value.message and "pocket engine" in e.value.message
    assert "audiosubnet[hf]" in e.value.hint and "clone" not in e.value.hint
