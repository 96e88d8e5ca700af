"""`asn bench` through Typer's CliRunner: the fake engine and an unavailable one, the output files,
--compare, and bad input (one line, no traceback)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from audiosubnet.commands.app import app

runner = CliRunner()
FAST = ["--scorers", "none", "--batch-sizes", "1,2", "--duration", "1", "--budget", "0.1", "--no-quality"]


def run(*args):
    # wide enough that Rich never shortens a metric's name in the compare table, whatever ran before
    return runner.invoke(app, ["bench", *args], catch_exceptions=False, env={"COLUMNS": "200"})


def test_bench_json_files_and_compare(tmp_path):
    r = run("--engines", "fake:ms_per_char=40,load_s=0.05,nosuch:x", *FAST, "--out", str(tmp_path / "a"), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    fake, missing = data["engines"]
    assert fake["spec"] == "fake:ms_per_char=40,load_s=0.05"  # the commas of the model name survive
    assert fake["status"] == "ok" and [p["batch"] for p in fake["points"]] == [1, 2]
    assert fake["cold_load_s"] >= 0.05 and fake["points"][0]["x_realtime"] > 0
    assert missing["status"] == "unavailable" and "nosuch" in missing["reason"]
    assert data["config"]["command"].startswith("asn bench --engines fake:")
    for name in ("bench.json", "bench.csv", "bench.png", "bench.md"):
        assert (tmp_path / "a" / name).stat().st_size > 0

    r = run("--engines", "fake:ms_per_char=40,load_s=0.05", *FAST, "--compare", str(tmp_path / "a" / "bench.json"))
    assert r.exit_code == 0, r.output
    assert "engines per batch size" in r.output and "compared with the previous run" in r.output
    assert "x_realtime" in r.output and "cold_load_s" in r.output

    r = run("--engines", "fake:ms_per_char=40,load_s=0.05", *FAST, "--compare", str(tmp_path / "a" / "bench.json"),
            "--json")
    deltas = json.loads(r.stdout)["compare"]
    assert {d["batch"] for d in deltas if d["metric"] == "x_realtime"} == {1, 2}


def test_table_shows_the_unavailable_engine():
    r = run("--engines", "fake,nosuch:x", *FAST)
    assert r.exit_code == 0, r.output
    assert "nosuch:x" in r.output and "unavailable" in r.output and "Traceback" not in r.output


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    r = run("--compare", str(tmp_path / "missing.json"))
    assert r.exit_code == 2 and "cannot read" in r.output and "Traceback" not in r.output
    r = run("--batch-sizes", "1,x")
    assert r.exit_code == 2 and "batch-sizes" in r.output
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    r = run("--device", "cuda", "--engines", "fake", "--scorers", "none")
    assert r.exit_code != 0 and "CUDA" in r.output and "Traceback" not in r.output
