"""The report writers: JSON, CSV, PNG and markdown exist and parse; the Rich tables; compare's deltas."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
from rich.console import Console

from audiosubnet.bench import report
from audiosubnet.bench.runner import BenchResult, EngineResult, Point, ScorerResult


def sample() -> BenchResult:
    mms = EngineResult(spec="mms", label="mms (random full)", model_id="mms:/tmp/mms", engine="mms",
                       weights="random-full", device="cuda", dtype="float16", cold_load_s=1.5, warm_load_s=1e-5,
                       first_audio_s=0.3, weights_mb=69.0, build_s=4.0, quality_note="skipped: random weights",
                       notes=["durations forced to 2 frames per token"])
    for b, x in ((1, 500.0), (64, 2000.0)):
        mms.points.append(Point(batch=b, seconds=30 * b / x, audio_s=30.0 * b, per_item_s=30.0, rtf=1 / x,
                                x_realtime=x, reps=3, peak_mb=300.0 + b, anchor_x=2358.0 if b == 64 else None,
                                pct_of_anchor=100 * x / 2358 if b == 64 else None,
                                meets_target=x >= 0.6 * 2358 if b == 64 else None, vs_old_subnet=x * 4.36 / 30))
    piper = EngineResult(spec="piper", label="piper", model_id="piper:en_US-joe-medium", engine="piper",
                         cold_load_s=1.1, warm_load_s=2e-5, first_audio_s=0.2,
                         quality={"n": 6, "zeroed": 0, "wer": 0.12, "mos": 3.6, "composite": 0.7},
                         points=[Point(batch=1, seconds=1.5, audio_s=30.0, per_item_s=30.0, rtf=0.05,
                                       x_realtime=20.0, reps=2, peak_mb=350.0, vs_old_subnet=2.9)])
    missing = EngineResult(spec="bark", label="bark", engine="bark", status="unavailable",
                           reason="Model 'bark:suno/bark-small' is not downloaded (Run `asn models pull`.)")
    asr = ScorerResult(name="asr", model="hf:openai/whisper-large-v3-turbo", device="cuda", dtype="float16",
                       weights="random-full", clip_s=30.0,
                       points=[Point(batch=32, seconds=0.9, audio_s=960.0, clips_per_s=35.5, x_realtime=1066.0,
                                     rtf=0.0009, reps=3, peak_mb=4000.0, anchor_x=1113.0, pct_of_anchor=95.8,
                                     meets_target=True)])
    pipe = ScorerResult(name="pipeline", model="asr=...,mos=dnsmos", clip_s=30.0,
                        points=[Point(batch=8, seconds=4.0, audio_s=240.0, clips_per_s=2.0, x_realtime=60.0,
                                      reps=1, vs_old_subnet=2.5, stages_s={"checks": 0.1, "asr": 3.0})])
    utmos = ScorerResult(name="utmos", status="unavailable", reason="Model 'chaanks/UTMOS' is not downloaded")
    return BenchResult(env={"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0",
                            "transformers": "5.17.0", "cpu_count": 16, "git_commit": "abc123"},
                       config={"duration": 30.0, "budget_s": 10.0, "command": "asn bench --random-weights"},
                       engines=[mms, piper, missing], scorers=[asr, pipe, utmos], started="2026-11-25T10:00:00+00:00",
                       wall_s=12.0)


def test_write_all_files_exist_and_parse(tmp_path):
    result = sample()
    paths = report.write_all(result, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"bench.json", "bench.csv", "bench.png", "bench.md"}
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == "asn-bench-1" and data["env"]["device_name"].startswith("NVIDIA")
    assert report.load(paths["json"]).to_dict() == data  # the JSON reads back into the same result
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["section"] for r in rows].count("engine") == 4  # mms x2, piper, bark (no points)
    assert [r["section"] for r in rows].count("scorer") == 3
    bark = next(r for r in rows if r["label"] == "bark")
    assert bark["status"] == "unavailable" and "not downloaded" in bark["reason"] and bark["batch"] == ""
    mms64 = next(r for r in rows if r["label"].startswith("mms") and r["batch"] == "64")
    assert float(mms64["x_realtime"]) == 2000 and float(mms64["pct_of_anchor"]) == pytest.approx(84.8, abs=0.1)
    assert json.loads(next(r for r in rows if r["name"] == "pipeline")["stages_s"]) == {"checks": 0.1, "asr": 3.0}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 10_000
    md = paths["md"].read_text()
    assert "`asn bench --random-weights`" in md and "NVIDIA H100" in md
    head = next(line for line in md.splitlines() if line.startswith("| engine | weights |"))
    table = [line for line in md.splitlines() if line.startswith("| mms (random full) | random-full |")]
    assert len(table) == 2 and all(line.count("|") == head.count("|") for line in table)
    assert "% of H100 anchor" in md and "85%" in md and "unavailable" in md and "| 0.12 |" in md


def test_render_tables():
    buf = io.StringIO()
    report.render(sample(), Console(file=buf, width=220, color_system=None))
    text = buf.getvalue()
    for needle in ("engines per batch size", "mms (random full)", "% anchor", "2,000x",
                   "scorers", "bark [float32] unavailable", "not downloaded", "durations forced",
                   "pipeline batch 8 seconds per stage: checks 0.100, asr 3.000"):
        assert needle in text, needle


def test_compare_shows_deltas():
    before, after = sample(), sample()
    after.engines[0].points[1].x_realtime = 2400.0  # mms b64 20% faster
    after.engines[0].points[1].peak_mb = 400.0  # and uses more memory
    after.engines[1].quality["wer"] = 0.06  # piper WER halved
    after.scorers[0].points[0].clips_per_s = 30.0  # ASR slower
    deltas = report.compare(after, before)
    by = {(d["name"], d["batch"], d["metric"]): d for d in deltas}
    d = by[("mms (random full)", 64, "x_realtime")]
    assert d["before"] == 2000 and d["after"] == 2400 and d["change_pct"] == pytest.approx(20) and d["better"]
    assert by[("mms (random full)", 64, "peak_mb")]["better"] is False
    assert by[("piper", None, "wer")]["change_pct"] == pytest.approx(-50) and by[("piper", None, "wer")]["better"]
    assert by[("asr", 32, "clips_per_s")]["better"] is False
    assert by[("piper", 1, "x_realtime")]["change_pct"] == 0 and by[("piper", 1, "x_realtime")]["better"] is None
    other = copy.deepcopy(before)
    for e in other.engines:
        e.dtype = "bfloat16"
    other.scorers = []
    assert report.compare(after, other) == []  # nothing in common: other dtype
    buf = io.StringIO()
    report.render_compare(deltas, Console(file=buf, width=200, color_system=None))
    assert "+20.0%" in buf.getvalue() and "-50.0%" in buf.getvalue()


def test_load_rejects_other_json(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError):
        report.load(f)
