"""Shared by the transformers engine tests: a CPU cache per test module, engines leased on one torch thread;
FakeCapture, a CUDA graph capture that runs on the CPU (audiosubnet.engines.cuda_graphs)."""

from __future__ import annotations

import pytest

from audiosubnet.engines.cache import ModelCache


@pytest.fixture(scope="module")
def cache():
    return ModelCache(device="cpu", dtype="float32")


@pytest.fixture
def lease(cache, monkeypatch):
    """`with lease(model_id) as engine:` from the module's cache, torch limited to one thread."""
    monkeypatch.setenv("ASN_TORCH_THREADS", "1")
    return cache.engine


class FakeCapture:
    """Records fn on the static inputs; replay reruns it and writes into the same output tensors."""

    def __init__(self, fail: Exception | None = None):
        self.captures, self.replays, self.fail = 0, 0, fail

    def __call__(self, fn, inputs, pool):
        if self.fail:
            raise self.fail
        self.captures += 1
        outputs = tuple(fn(*inputs))

        def replay():
            self.replays += 1
            for out, new in zip(outputs, fn(*inputs), strict=True):
                out.copy_(new)

        return replay, outputs


@pytest.fixture
def fake_capture():
    """The FakeCapture class (tests make one, or one that fails)."""
    return FakeCapture
