"""Clips stream out of the engine process one by one (`RemoteEngine.synthesize_iter`), as the batch jobs need."""

from __future__ import annotations

import pytest

from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.isolated import EngineCrashed, isolated_cache

pytestmark = pytest.mark.slow


def test_synthesize_iter_streams_every_clip_and_reports_a_crash():
    cache = isolated_cache("cpu", "float32", None)
    try:
        with cache.engine("fake:batching=false,delay_ms=20") as engine:
            reqs = [SynthesisRequest(f"Sentence {i}.") for i in range(5)]
            got = list(engine.synthesize_iter(reqs))
            assert sorted(i for i, _ in got) == [0, 1, 2, 3, 4]
            assert all(a.duration > 0 for _, a in got)
            from audiosubnet.engines.fake import FakeEngine  # what the same engine says in this process

            assert engine.scripts_for(reqs[0]) == FakeEngine("batching=false,delay_ms=20").scripts_for(reqs[0])
            it = engine.synthesize_iter(reqs)
            first = next(it)
            it.close()  # the caller stops listening: the rest is cancelled, the engine serves the next call
            assert first[0] in range(5)
            assert len(list(engine.synthesize_iter(reqs[:2]))) == 2
        with cache.engine("fake:crash=boom") as engine, pytest.raises(EngineCrashed):
            list(engine.synthesize_iter([SynthesisRequest("boom goes the engine")]))
    finally:
        cache.close()
