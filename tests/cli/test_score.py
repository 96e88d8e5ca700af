"""`asn score` through Typer's CliRunner with the real offline models: one file, a clone task, a
folder written by `asn tts batch`, and bad input (one line, exit 2, no traceback)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from audiosubnet import audio
from audiosubnet.commands.app import app
from audiosubnet.engines.base import SynthesisRequest

runner = CliRunner()
TEXT = "Can you believe it's already the end of November?"
pytestmark = pytest.mark.slow


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, cpu_cache):
    folder = tmp_path_factory.mktemp("score-cli")
    with cpu_cache.engine("piper:en_US-joe-medium") as e:
        a, b = e.synthesize([SynthesisRequest(TEXT), SynthesisRequest("The library opens at nine.")])
    (folder / "say.wav").write_bytes(audio.encode(a, "wav"))
    (folder / "ref.flac").write_bytes(audio.encode(b, "flac"))
    (folder / "bad.wav").write_bytes(b"RIFF not really audio")
    (folder / "long.wav").write_bytes(audio.encode(audio.Audio([0.0] * 8000 * 61, 8000), "wav"))
    return folder


def test_one_file(clips):
    r = run("score", str(clips / "say.wav"), "--text", TEXT)
    assert r.exit_code == 0, r.output
    assert "composite" in r.output and "wer" in r.output and "transcript:" in r.output
    assert r.output.strip().splitlines()[-1].startswith("scoring profile: asn-score-")  # the last line, labelled


def test_one_file_json_and_clone(clips):
    r = run("score", str(clips / "say.wav"), "--text", TEXT, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["composite"] > 0.5 and d["metrics"]["wer"] <= 0.3 and d["reason"] is None
    assert d["version"].startswith("asn-score-")
    r = run("score", str(clips / "say.wav"), "--text", TEXT, "--reference", str(clips / "ref.flac"), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["metrics"]["speaker_sim"] > 0.5 and d["composite"] > 0.5


@pytest.mark.parametrize(("args", "expect"), [
    (["missing.wav", "--text", "hi"], "does not exist"),
    (["say.wav"], "--text is required"),
    (["bad.wav", "--text", "hi"], "not decodable"),
    (["long.wav", "--text", "hi"], "Clips are scored up to 60 s"),  # too long is not a format problem
    (["say.wav", "--text", "hi", "--reference", "missing.wav"], "reference"),
    (["say.wav", "--text", "  "], "empty"),
    (["."], "no manifest.csv"),
    ([".", "--text", "hi"], "one file"),
    (["say.wav", "--text", "hi", "--preset", "turbo"], "preset"),
])
def test_bad_input_is_one_line_and_exit_2(clips, monkeypatch, args, expect):
    monkeypatch.chdir(clips)
    r = run("score", *args)
    assert r.exit_code == 2, r.output
    assert expect in r.output and "Traceback" not in r.output
    assert r.output.count("error:") == 1


def test_folder_from_tts_batch(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,text\none,The quick brown fox jumps over the lazy dog.\n"
                       "two,Please remember to bring your umbrella.\nthree,\n", encoding="utf-8")
    out = tmp_path / "renders"
    r = run("tts", "batch", str(prompts), "--out", str(out))
    assert (out / "manifest.csv").is_file(), r.output
    r = run("score", str(out), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["scored"] == 2 and d["skipped"] == 1  # the empty row failed in tts batch
    rows = list(csv.DictReader((out / "scores.csv").open(encoding="utf-8")))
    assert [row["id"] for row in rows] == ["one", "two"]
    assert all(float(row["composite"]) > 0.5 and float(row["wer"]) <= 0.3 for row in rows)
    r = run("score", str(out), "--out", str(tmp_path / "s.csv"))
    assert r.exit_code == 0 and (tmp_path / "s.csv").is_file()
    assert "2 scored" in r.output
