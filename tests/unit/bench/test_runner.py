"""The `asn bench` runner: the fake engine through the real registry and cache, rows for engines that cannot
load or fail, quality through the scoring package (fake scorers), Ctrl-C, and tiny random-weight models."""

from __future__ import annotations

import time

import pytest

from audiosubnet.bench.measuring import measure
from audiosubnet.bench.runner import BenchConfig, EngineResult, run_bench
from audiosubnet.bench.workloads import SENTENCES, letters, sized_text
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.engines.registry import EngineCache
from audiosubnet.scoring import Scorer


def cfg(**kw) -> BenchConfig:
    base = dict(scorers=[], batch_sizes=[1, 3], duration=1.5, quality=False, budget_s=0.2, max_reps=2)
    return BenchConfig(**{**base, **kw})


def test_fake_engine_loads_timings_and_batches():
    FakeEngine.calls.clear()
    events: list[str] = []
    result = run_bench(cfg(engines=["fake:load_s=0.2,ms_per_char=50"]), on_event=events.append)
    [row] = result.engines
    assert row.status == "ok" and row.reason is None, row
    assert row.cold_load_s >= 0.2 and row.warm_load_s < 0.05  # a fresh cache loads, the second lease hits
    assert row.first_audio_s is not None and row.sample_rate == 16000 and row.kind == "tts"
    assert [p.batch for p in row.points] == [1, 3]
    for p in row.points:
        assert p.error is None and p.reps >= 1 and p.peak_mb is not None and p.peak_mb >= 0
        assert p.per_item_s == pytest.approx(1.5, rel=0.25)  # texts sized to the duration asked for
        assert p.rtf == pytest.approx(p.seconds / p.audio_s) and p.x_realtime == pytest.approx(1 / p.rtf)
        assert p.vs_old_subnet == pytest.approx((4.36 / 30) / p.rtf)
    assert ("load_s=0.2,ms_per_char=50", 3) in FakeEngine.calls  # batch 3 is one synthesize() call
    assert result.env["cpu_count"] and "git_commit" in result.env and result.env["device"] == "cpu"
    assert any("b3" in e for e in events)
    assert row.quality is None and "quality off" in row.quality_note


def test_engines_that_cannot_run_become_rows(tmp_path):
    result = run_bench(cfg(engines=["nosuch:x", f"mms:{tmp_path / 'missing'}", "fake:fail=e", "fake"],
                           batch_sizes=[1]))
    rows = {r.spec: r for r in result.engines}
    assert rows["nosuch:x"].status == "unavailable" and "nosuch" in rows["nosuch:x"].reason
    mms = rows[f"mms:{tmp_path / 'missing'}"]
    assert mms.status in ("unavailable", "error") and mms.reason and not mms.points
    assert rows["fake:fail=e"].status == "error" and "refuses" in rows["fake:fail=e"].reason
    assert rows["fake"].status == "ok" and rows["fake"].points  # the run went on after the failures


def test_non_batching_engine_is_measured_at_batch_1_only():
    [row] = run_bench(cfg(engines=["fake:batching=false"], batch_sizes=[1, 4])).engines
    assert [p.batch for p in row.points] == [1]
    assert any("one request at a time" in n for n in row.notes)


def test_ctrl_c_returns_what_was_measured():
    def stop_at_b3(msg: str) -> None:
        if " b3:" in msg:
            raise KeyboardInterrupt

    result = run_bench(cfg(engines=["fake", "espeak"]), on_event=stop_at_b3)
    assert result.interrupted
    assert [r.spec for r in result.engines] == ["fake"]  # espeak never started
    assert [p.batch for p in result.engines[0].points] == [1]


class _FakeAsr(Scorer):
    name, metrics = "asr", ("wer", "cer")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"wer": 0.1, "cer": 0.05} for _ in items]


class _FakeMos(Scorer):
    name, metrics = "dnsmos", ("dnsmos_ovrl", "dnsmos_p808")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"dnsmos_ovrl": 3.0, "dnsmos_p808": 4.0} for _ in items]


class _FakeSpeaker(Scorer):
    name, metrics, needs_reference = "speaker", ("speaker_sim",), True

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        assert all(it.reference is not None for it in items)
        return [{"speaker_sim": 0.9} for _ in items]


def test_quality_goes_through_the_scoring_package():
    from audiosubnet.config import ScoreSettings
    from audiosubnet.scoring import Scoring

    scoring = Scoring(ScoreSettings(speaker_model="dvector"), cache=EngineCache(),
                      scorers=[_FakeAsr, _FakeMos, _FakeSpeaker])
    result = run_bench(cfg(engines=["espeak", "world:espeak:en-us", "fake:fail=e"], batch_sizes=[1], quality=True),
                       quality_scoring=scoring)
    espeak, world, failing = result.engines
    assert espeak.quality["n"] == 6 and espeak.quality["wer"] == pytest.approx(0.1)
    assert espeak.quality["mos"] == pytest.approx(3.5) and "speaker_sim" not in espeak.quality
    assert world.kind == "clone" and world.quality["speaker_sim"] == pytest.approx(0.9)  # references given
    assert failing.quality is None


def test_measure_repeats_within_budget_and_keeps_a_slow_warm_up():
    calls = []
    times, out, warmed = measure(lambda: calls.append(1) or len(calls), "cpu", budget_s=0.05, max_reps=4)
    assert warmed and 1 <= len(times) <= 4 and len(calls) == len(times) + 1 and out == len(calls)
    times, _, warmed = measure(lambda: time.sleep(0.06), "cpu", budget_s=0.05)
    assert not warmed and len(times) == 1  # on CPU a warm-up over the budget is the measurement


def test_peak_memory_above_the_baseline():
    import numpy as np

    from audiosubnet.bench.measuring import _Peak, memory_now_mb

    base = memory_now_mb("cpu")
    with _Peak("cpu", base) as peak:
        x = np.ones(80 * 2**20 // 8)  # 80 MiB, touched
        del x
    assert 60 <= peak.mb <= 400


def test_texts():
    assert len(letters(469, 3)) == 469 and letters(40, 1) != letters(40, 2)
    t = sized_text(300, offset=2)
    assert 250 <= len(t) <= 300 and t.endswith(".") and t.startswith(SENTENCES[2][:10])


def test_bad_config_is_a_usage_error():
    from audiosubnet.errors import UsageError

    with pytest.raises(UsageError):
        run_bench(cfg(engines=[], batch_sizes=[0]))
    with pytest.raises(UsageError, match="unknown scorer"):
        run_bench(cfg(engines=[], scorers=["wer"]))


def test_result_round_trips_through_json():
    import json

    result = run_bench(cfg(engines=["fake", "nosuch:x"], batch_sizes=[1]))
    data = json.loads(json.dumps(result.to_dict()))
    again = type(result).from_dict(data)
    assert isinstance(again.engines[0], EngineResult) and again.engines[0].points[0].batch == 1
    assert again.to_dict() == data


# ---- tiny random-weight models (the --random-weights path on CPU) -----------------------------------------
@pytest.mark.slow
def test_tiny_random_engines():
    pytest.importorskip("transformers")
    pytest.importorskip("pocket_tts")
    result = run_bench(cfg(engines=["mms", "speecht5", "speecht5-clone", "bark", "pocket"], random_weights=True,
                           tiny=True, batch_sizes=[1, 2], duration=1.0, quality=True, max_reps=1, budget_s=0.0))
    rows = {r.engine: r for r in result.engines}
    for r in rows.values():
        assert r.status == "ok", (r.engine, r.reason)
        assert r.weights == "random-tiny" and r.build_s is not None and r.points
        assert r.quality is None and "random weights" in r.quality_note
    assert rows["mms"].points[0].per_item_s == pytest.approx(1.0, rel=0.05)  # durations forced
    for name in ("speecht5", "speecht5-clone"):
        assert [p.batch for p in rows[name].points] == [1, 2]
        assert rows[name].points[1].per_item_s == pytest.approx(1.0, rel=0.1)  # decoder steps forced
    assert rows["speecht5-clone"].kind == rows["pocket"].kind == "clone"
    assert rows["pocket"].extra["voice_prompt_s"] > 0


@pytest.mark.slow
def test_tiny_random_scorers():
    pytest.importorskip("transformers")
    result = run_bench(cfg(engines=[], scorers=["asr", "dnsmos", "utmos", "speaker", "pipeline-clone"],
                           random_weights=True, tiny=True, batch_sizes=[1, 2], duration=2.0, max_reps=1,
                           budget_s=0.0))
    rows = {s.name: s for s in result.scorers}
    assert list(rows) == ["asr", "dnsmos", "utmos", "speaker", "pipeline-clone"]
    for s in rows.values():
        assert s.status == "ok", (s.name, s.reason)
        assert [p.batch for p in s.points] == [1, 2]
        assert all(p.clips_per_s > 0 and p.x_realtime == pytest.approx(p.clips_per_s * s.clip_s, rel=0.01)
                   for p in s.points)
    stages = rows["pipeline-clone"].points[1].stages_s
    assert {"checks", "asr", "dnsmos", "utmos", "speaker"} <= set(stages)
    assert rows["pipeline-clone"].points[0].vs_old_subnet == pytest.approx(
        rows["pipeline-clone"].points[0].clips_per_s * 1.30)


def test_anchor_points_only_for_full_random_weights_on_cuda():
    from audiosubnet.bench.engines import anchor_x

    on = cfg(engines=[], anchors=True)
    assert anchor_x(on, "mms", 64, "float16", "random-full", "cuda") == 2358.0
    assert anchor_x(on, "speecht5", 1, "float32", "random-full", "cuda") == 4.0
    assert anchor_x(on, "mms", 64, "float16", "random-tiny", "cuda") is None
    assert anchor_x(on, "mms", 64, "float16", "random-full", "cpu") is None
    assert anchor_x(on, "mms", 8, "float16", "random-full", "cuda") is None
    assert anchor_x(cfg(engines=[]), "mms", 64, "float16", "random-full", "cuda") is None
