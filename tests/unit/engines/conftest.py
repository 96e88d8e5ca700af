"""Shared by the transformers engine tests: a CPU cache per test module, engines leased on one torch thread."""

from __future__ import annotations

import pytest

from audiosubnet.engines.registry import EngineCache


@pytest.fixture(scope="module")
def cache():
    return EngineCache(device="cpu", dtype="float32")


@pytest.fixture
def lease(cache, monkeypatch):
    """`with lease(model_id) as engine:` from the module's cache, torch limited to one thread."""
    monkeypatch.setenv("ASN_TORCH_THREADS", "1")
    return cache.engine
