"""`asn bench` on the music engine: a tiny random MusicGen, batch 1 and 2, lengths from the request."""

from __future__ import annotations

import pytest

from audiosubnet.bench.runner import BenchConfig, run_bench

pytestmark = pytest.mark.slow


def test_tiny_random_musicgen_row():
    pytest.importorskip("transformers")
    result = run_bench(BenchConfig(engines=["musicgen"], scorers=[], device="cpu", random_weights=True, tiny=True,
                                   batch_sizes=[1, 2], duration=0.5, quality=True, max_reps=1, budget_s=0.0))
    (row,) = result.engines
    assert row.status == "ok", row.reason
    assert row.kind == "music" and row.weights == "random-tiny" and row.sample_rate == 32000
    assert [p.batch for p in row.points] == [1, 2]
    for p in row.points:
        assert p.per_item_s == pytest.approx(0.5, abs=1e-3) and p.x_realtime > 0 and p.vs_old_subnet is None
    assert "music" in row.quality_note or "random weights" in row.quality_note
    assert any("0.5 s of music per item" in n for n in row.notes)


def test_music_scorer_row_on_a_tiny_random_clap():
    pytest.importorskip("transformers")
    result = run_bench(BenchConfig(engines=[], scorers=["music"], device="cpu", random_weights=True, tiny=True,
                                   batch_sizes=[1, 3], duration=1.0, max_reps=1, budget_s=0.0))
    (row,) = result.scorers
    assert row.status == "ok", row.reason
    assert row.name == "music" and row.load_s is not None and [p.batch for p in row.points] == [1, 3]
    for p in row.points:
        assert p.clips_per_s > 0 and p.x_realtime == pytest.approx(p.clips_per_s * 1.0, rel=0.01)
