"""Shared by the unit tests: FakeCapture, a CUDA graph capture that runs on the CPU
(audiosubnet.runtime.cuda_graphs; used by the runtime tests and the engines that replay graphs)."""

from __future__ import annotations

import pytest


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
