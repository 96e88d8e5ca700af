"""`asn tts batch` and `asn clone watch` run the engine in a child process: a row or pair that crashes it
(a native SIGSEGV; the espeak-ng voice that used to abort it) is recorded as failed with the reason, and the job
goes on with the others."""

from __future__ import annotations

import csv
import json

import numpy as np
from typer.testing import CliRunner

from audiosubnet import audio
from audiosubnet.commands.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _manifest(folder) -> dict[str, dict]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_tts_batch_survives_a_row_that_crashes_the_engine(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,text,model,voice\n"
                       "a,First row.,,\n"
                       "b,This row will segv the engine.,,\n"
                       "c,Third row.,,\n"
                       "d,An espeak row.,espeak:en-us,en-us+" + "x" * 40 + "\n"
                       "e,A fine espeak row.,espeak:en-us,en-us+f3\n", encoding="utf-8")
    out = tmp_path / "out"
    r = run("tts", "batch", str(prompts), "--out", str(out), "--model", "fake:crash=segv", "--json")
    assert r.exit_code == 1, r.output  # some rows failed
    assert "Traceback" not in r.output
    rows = _manifest(out)
    assert {k: v["status"] for k, v in rows.items()} == {"a": "ok", "b": "error", "c": "ok", "d": "error",
                                                         "e": "ok"}
    assert "crashed" in rows["b"]["error"] and "SIGSEGV" in rows["b"]["error"]
    assert "espeak-ng voice variant" in rows["d"]["error"]
    assert sorted(p.name for p in out.glob("*.wav")) == ["a.wav", "c.wav", "e.wav"]


def test_tts_batch_fails_only_the_row_whose_engine_raised_an_untyped_error(tmp_path):
    """RuntimeError('CUDA error: out of memory') on one of three rows (the one batch policy)."""
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,text\na,First row.\nb,This row runs out of memory: oom.\nc,Third row.\n", encoding="utf-8")
    out = tmp_path / "out"
    r = run("tts", "batch", str(prompts), "--out", str(out), "--model", "fake:error=oom", "--json")
    assert r.exit_code == 1, r.output  # one row failed
    assert "Traceback" not in r.output
    rows = _manifest(out)
    assert {k: v["status"] for k, v in rows.items()} == {"a": "ok", "b": "error", "c": "ok"}
    assert "RuntimeError" in rows["b"]["error"] and "out of memory" in rows["b"]["error"]


def _voice(seconds=1.5, sr=16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return audio.encode(audio.Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr), "wav")


def test_clone_watch_survives_a_pair_that_crashes_the_engine(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for stem, text in [("one", "Hello there."), ("two", "This pair will segv the engine."), ("three", "Bye.")]:
        (src / f"{stem}.wav").write_bytes(_voice())
        (src / f"{stem}.txt").write_text(text, encoding="utf-8")
    flags = ["--source", str(src), "--target", str(tmp_path / "out"), "--processed", str(tmp_path / "done"),
             "--failed", str(tmp_path / "bad")]
    r = run("clone", "watch", "--once", "--json", "--model", "fake:clone=true,crash=segv", "--settle", "0", *flags)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert (summary["ok"], summary["failed"]) == (2, 1), summary
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["one.wav", "three.wav"]
    reasons = " ".join(p.read_text() for p in (tmp_path / "bad").rglob("*") if p.is_file() and p.suffix != ".wav")
    assert "crashed" in reasons or "crashed" in r.output, (reasons, r.output)
