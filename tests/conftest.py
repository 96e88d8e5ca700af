"""Shared test setup: every test gets its own ASN_HOME and a clean ASN_* environment, no network."""

from __future__ import annotations

import os

import pytest

KEEP = {"ASN_TORCH_THREADS", "ASN_ORT_THREADS"}


def pytest_configure(config):
    """The tests-only `fake` engine: an entry point of this environment (tests/asn_test_engines.py), so every
    process a test starts finds it; the shipped package does not declare it. Without a GPU, Triton kernels run
    under Triton's interpreter: TRITON_INTERPRET=1 must be set before anything imports Triton."""
    import importlib.util
    from pathlib import Path

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")

    spec = importlib.util.spec_from_file_location("asn_test_engines", Path(__file__).with_name("asn_test_engines.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.install():
        import warnings

        warnings.warn("site-packages is read-only: the fake engine is registered in the test process only; tests "
                      "that start `asn` processes with it will fail", stacklevel=1)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("asn_home")
    for key in list(os.environ):
        if key.startswith("ASN_") and key not in KEEP:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ASN_HOME", str(home))
    monkeypatch.setenv("ASN_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    yield home


@pytest.fixture
def triton_device(monkeypatch):
    """Where a test's Triton kernels run: the GPU, else the CPU under Triton's interpreter (set here; Triton's own
    library functions are interpreted only when TRITON_INTERPRET=1 was set before Triton was first imported)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed")
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    std = sys.modules.get("triton.language.standard")
    if std is not None and type(std.max).__name__ != "InterpretedFunction":
        pytest.skip("Triton was imported without TRITON_INTERPRET=1: its kernels cannot run on the CPU")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delitem(sys.modules, "audiosubnet.runtime.triton_decode", raising=False)
    return torch.device("cpu")


@pytest.fixture(scope="session")
def cpu_cache():
    """The commands' EngineCache on CPU/fp32: models load once per test session, for library tests and the
    commands run in this process alike."""
    from audiosubnet.engines.registry import configure_cache

    return configure_cache("cpu", "float32", None)


@pytest.fixture(scope="session")
def tiny_musicgen(tmp_path_factory):
    """A tiny random MusicGen + T5-style tokenizer folder (load it as musicgen:<folder>)."""
    pytest.importorskip("transformers")
    from audiosubnet.bench.random_music import build_musicgen

    return build_musicgen(tmp_path_factory.mktemp("musicgen") / "tiny")


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory):
    """A tiny random CLAP folder (model, tokenizer, feature extractor)."""
    pytest.importorskip("transformers")
    from audiosubnet.bench.random_music import build_clap

    return build_clap(tmp_path_factory.mktemp("clap") / "tiny")
