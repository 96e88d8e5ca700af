"""`asn clone watch` through Typer's CliRunner: --once for cron, exit codes, settings, one real engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from audiosubnet import audio
from audiosubnet.commands.app import app

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


def voice(seconds=1.5, f0=140.0, sr=16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return audio.encode(audio.Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr), "wav")


@pytest.fixture
def dirs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    return {"source": src, "target": tmp_path / "out", "processed": tmp_path / "done", "failed": tmp_path / "bad"}


def folder_flags(d) -> list[str]:
    return ["--source", str(d["source"]), "--target", str(d["target"]), "--processed", str(d["processed"]),
            "--failed", str(d["failed"])]


def drop(d, stem, text="Hello from the folder.", data=None):
    (d["source"] / f"{stem}.wav").write_bytes(voice() if data is None else data)
    (d["source"] / f"{stem}.txt").write_text(text, encoding="utf-8")


def test_once_clones_everything_there_and_exits_0(dirs):
    drop(dirs, "one")
    drop(dirs, "two")
    r = run("clone", "watch", "--once", "--model", "fake:clone=true", "--settle", "0", *folder_flags(dirs))
    assert r.exit_code == 0, r.output
    assert "2 cloned, 0 failed" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in dirs["target"].glob("*.wav")) == ["one.wav", "two.wav"]
    assert sorted(p.name for p in dirs["processed"].iterdir()) == ["one.txt", "one.wav", "two.txt", "two.wav"]


def test_once_exits_1_when_a_pair_failed_and_says_why(dirs):
    drop(dirs, "good")
    drop(dirs, "broken", data=b"this is not audio" * 20)
    r = run("clone", "watch", "--once", "--json", "--model", "fake:clone=true", "--settle", "0",
            *folder_flags(dirs))
    assert r.exit_code == 1
    assert "broken: broken.wav: not decodable audio" in r.output
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert {x["stem"]: x["status"] for x in summary["results"]} == {"broken": "failed", "good": "ok"}
    assert (dirs["failed"] / "broken.error.txt").is_file()


def test_settings_come_from_the_environment(dirs, monkeypatch):
    monkeypatch.setenv("ASN_CLONE__SOURCE", str(dirs["source"]))
    monkeypatch.setenv("ASN_CLONE__TARGET", str(dirs["target"]))
    monkeypatch.setenv("ASN_CLONE__PROCESSED", str(dirs["processed"]))
    monkeypatch.setenv("ASN_CLONE__FAILED", str(dirs["failed"]))
    monkeypatch.setenv("ASN_CLONE__MODEL", "fake:clone=true")
    monkeypatch.setenv("ASN_CLONE__SETTLE_S", "0")
    monkeypatch.setenv("ASN_CLONE__FORMAT", "flac")
    drop(dirs, "env")
    r = run("clone", "watch", "--once")
    assert r.exit_code == 0, r.output
    assert (dirs["target"] / "env.flac").is_file()


def test_a_missing_source_folder_is_one_line_and_exit_2(dirs, tmp_path):
    r = run("clone", "watch", "--once", "--model", "fake:clone=true", "--source", str(tmp_path / "nope"),
            "--target", str(dirs["target"]))
    assert r.exit_code == 2
    assert "does not exist" in r.output and "Traceback" not in r.output
    assert "hint:" in r.output


def test_a_model_that_cannot_clone_is_refused(dirs):
    r = run("clone", "watch", "--once", "--model", "espeak:en-us", *folder_flags(dirs))
    assert r.exit_code == 2
    assert "cannot clone voices" in r.output


@pytest.mark.slow
def test_the_offline_fallback_end_to_end(dirs):
    """The real `world` engine (espeak base voice), as a user without a GPU or downloads runs it."""
    drop(dirs, "real", text="The quick brown fox jumps over the lazy dog.")
    r = run("clone", "watch", "--once", "--model", "world:espeak:en-us", "--settle", "0", *folder_flags(dirs))
    assert r.exit_code == 0, r.output
    out = audio.read(dirs["target"] / "real.wav")
    assert out.sample_rate == 22050 and 1.5 < out.duration < 6.0
    assert audio.rms_db(out.samples) > -40


def test_help_has_examples():
    r = run("clone", "watch", "--help")
    assert r.exit_code == 0
    assert "asn clone watch --once" in r.output and "--orphan-timeout" in r.output
