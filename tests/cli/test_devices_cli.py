"""`--devices` on `asn tts batch`, `asn mine` and `asn serve`: a bad list is one line and exit status 2, before
anything is loaded or bound; `asn tts batch --devices cpu:2` renders through two engine processes."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from audiosubnet.commands.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch):
    """This machine's GPUs, as the pool counts them: none (the same answer on a CPU-only runner and a GPU box)."""
    monkeypatch.setattr("audiosubnet.engines.pool.cuda_device_count", lambda: 0)


@pytest.mark.parametrize("command", [["tts", "batch", "p.csv"], ["mine", "--network", "sim"], ["serve"]])
@pytest.mark.parametrize("value,message", [
    ("all", "no CUDA device is visible"),
    ("0,1", "there is no CUDA device 0"),
    ("0,cpu", "mixes the CPU and CUDA devices"),
    ("cpu:0", "cpu:N needs a count"),
    ("gpu", "'gpu' is not a device"),
])
def test_bad_devices_are_one_line_and_exit_2(tmp_path, monkeypatch, command, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("text\nHello.\n", encoding="utf-8")
    r = run(*command, "--devices", value)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and message in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "tts_target").exists()  # nothing was rendered


def test_tts_batch_on_two_cpu_engines(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"r{i},Row {i}.\n" for i in range(6)), encoding="utf-8")
    out = tmp_path / "out"
    r = run("tts", "batch", str(prompts), "--out", str(out), "--model", "fake:max_batch=2", "--devices", "cpu:2",
            "--max-batch", "2")
    assert r.exit_code == 0, r.output
    with (out / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [x["id"] for x in rows] == [f"r{i}" for i in range(6)] and {x["status"] for x in rows} == {"ok"}
