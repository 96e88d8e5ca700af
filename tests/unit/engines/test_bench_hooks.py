"""The benchmark hooks of the engine contract: `one_pass(size)` runs a batch in one forward pass for engines
that split batches into passes (and is a no-op for the others); `bench_extras` adds engine-specific numbers.
The benchmark uses only these, never an engine's private attributes."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SpeechEngine
from audiosubnet.engines.speecht5_clone import SpeechT5CloneEngine


class Passes(SpeechEngine):
    name = "passes"

    def __init__(self, model=None, forward_batch=0):
        super().__init__(model)
        if forward_batch:
            self.forward_batch = forward_batch

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(sample_rate=16000, languages=("en",), batching=True)

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def _synthesize(self, requests):
        return [Audio(np.zeros(1600, np.float32), 16000) for _ in requests]


def test_one_pass_sets_the_knob_and_restores_it():
    e = Passes(forward_batch=4)
    with e.one_pass(32):
        assert e.forward_batch == 32
    assert e.forward_batch == 4
    with pytest.raises(RuntimeError), e.one_pass(8):
        raise RuntimeError("out of memory")
    assert e.forward_batch == 4


def test_one_pass_leaves_engines_without_the_knob_alone():
    e = Passes()
    with e.one_pass(32):
        assert e.forward_batch == 0
    assert e.bench_extras(None) == {}


def test_speecht5_clone_passes_the_batch_to_its_wrapped_engine():
    clone = SpeechT5CloneEngine()  # cheap: nothing is read before setup
    clone.inner.forward_batch = 2
    with clone.one_pass(16):
        assert clone.inner.forward_batch == 16
    assert clone.inner.forward_batch == 2
