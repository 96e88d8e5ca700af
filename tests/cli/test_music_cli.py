"""`asn music gen|batch` and `asn models pull clap:` through Typer's CliRunner on a tiny random MusicGen."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from audiosubnet import audio
from audiosubnet.commands.app import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(r) -> str:
    assert "Traceback" not in r.output
    return r.output


def test_gen_writes_the_length_asked_for(tmp_path, tiny_musicgen):
    out = tmp_path / "beat.flac"
    r = run("music", "gen", "lo-fi beat with soft piano", "-d", "0.5", "-o", str(out), "--seed", "1",
            "--model", f"musicgen:{tiny_musicgen}", "--device", "cpu")
    assert r.exit_code == 0, r.output
    clip = audio.read(out)
    assert clip.sample_rate == 32000 and clip.duration == pytest.approx(0.5, abs=1e-3)


def test_gen_refuses_bad_input_in_one_line(tmp_path, tiny_musicgen):
    r = run("music", "gen", "beat", "-d", "45", "-o", str(tmp_path / "x.wav"), "--model", f"musicgen:{tiny_musicgen}")
    assert r.exit_code != 0 and "outside 0.5-30 s" in one_line_error(r)
    r = run("music", "gen", "beat", "-o", str(tmp_path / "x.wav"), "--model", "fake:default")
    assert r.exit_code != 0 and "not a text-to-music model" in one_line_error(r)
    r = run("music", "gen", "beat", "-o", str(tmp_path / "x.aiff"))
    assert r.exit_code == 2 and "unknown audio format" in one_line_error(r)


def test_batch_json_and_resume(tmp_path, tiny_musicgen):
    src = tmp_path / "prompts.csv"
    src.write_text("id,prompt,duration,seed\na,lo-fi beat,0.5,1\nb,,0.5,2\n")
    out = tmp_path / "music_target"
    args = ("music", "batch", str(src), "--out", str(out), "--model", f"musicgen:{tiny_musicgen}", "--json")
    r = run(*args)
    assert r.exit_code == 1  # row b has no prompt
    summary = json.loads(r.stdout)
    assert (summary["ok"], summary["failed"]) == (1, 1) and (out / "a.wav").is_file()
    again = json.loads(run(*args).stdout)
    assert (again["ok"], again["skipped"]) == (0, 1)
    r = run("music", "batch", str(tmp_path / "missing.csv"))
    assert r.exit_code == 2 and "does not exist" in one_line_error(r)


def test_models_pull_clap_offline_is_one_line():
    r = run("models", "pull", "clap:laion/larger_clap_music")
    assert r.exit_code == 1 and "asn models pull clap:laion/larger_clap_music" in one_line_error(r)
