"""What a newcomer meets in the CLI (through Typer's CliRunner): `asn models list` fast and whole,
`asn voices`, typed `--json`, plain boolean flags, text an engine cannot read, test wallets under ASN_HOME."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from audiosubnet.commands.app import app

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)


# ---- 10: models list, voices, --json, flags ----------------------------------------------------------
def test_models_list_is_fast_whole_and_has_no_test_engine(monkeypatch):
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.models_info import list_models

    cache = EngineCache(None, "cpu", "float32")
    list_models(cache)  # imports the engine modules once, as any command does
    t0 = time.perf_counter()
    rows = list_models(cache)
    assert time.perf_counter() - t0 < 1.0
    assert cache.loaded() == [] and cache.misses == 0  # nothing was loaded to list them
    assert rows and not any(r["engine"] == "fake" for r in rows)

    monkeypatch.setenv("COLUMNS", "80")
    r = run("models", "list")
    assert r.exit_code == 0, r.output
    for row in rows:  # every id in one piece, however narrow the terminal
        assert row["model"] in r.output, row["model"]
    assert "fake:" not in r.output


def test_models_list_json_has_typed_values():
    rows = json.loads(run("models", "list", "--json").stdout)
    joe = next(r for r in rows if r["model"] == "piper:en_US-joe-medium")
    assert isinstance(joe["size_bytes"], int) and joe["downloaded"] is True and joe["loaded"] in (True, False)


def test_voices_of_a_model_and_of_espeak():
    r = run("voices")
    assert r.exit_code == 0 and "joe" in r.stdout
    r = run("models", "voices", "espeak", "--json")
    d = json.loads(r.stdout)
    assert d["model"] == "espeak:en-us" and d["open_voices"] is True and d["scripts"] == ["Latn"]
    names = [v["voice"] for v in d["voices"]]
    assert "en-us" in names and "ru" in names and len(names) > 50


def test_batch_json_numbers_are_numbers(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("id,text\na,Hello.\n")
    r = run("tts", "batch", p, "--out", tmp_path / "o", "--model", "fake", "--json")
    row = json.loads(r.stdout)["rows"][0]
    assert isinstance(row["sample_rate"], int) and isinstance(row["bytes"], int)
    assert isinstance(row["duration_s"], float) and row["status"] == "ok"
    r = run("tts", "batch", p, "--out", tmp_path / "o", "--model", "fake", "--json")  # resumed rows, same types
    row = json.loads(r.stdout)["rows"][0]
    assert row["skipped"] is True and isinstance(row["sample_rate"], int) and isinstance(row["duration_s"], float)


def test_boolean_flags_are_plain_flags(tmp_path):
    for cmd in (["clone", "watch"], ["tts", "batch"], ["sim", "register"], ["validate"]):
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "<bool>" not in r.stdout and "BOOLEAN" not in r.stdout, cmd
    src = tmp_path / "in"
    src.mkdir()
    r = run("clone", "watch", "--once", "--model", "fake:clone=true", "--source", src, "--target", tmp_path / "t",
            "--processed", tmp_path / "p", "--failed", tmp_path / "f", "--settle", "0")
    assert r.exit_code == 0, r.output


# ---- 6: text an engine cannot read ----------------------------------------------------------------------
def test_a_row_in_a_script_the_model_cannot_read_is_a_row_error_or_a_warning(tmp_path, caplog):
    p = tmp_path / "p.csv"
    p.write_text("id,text\nen,Hello there.\nzh,你好，世界。\nmix,Meet 王小明 at noon.\nemoji,Party time 🎉🥳!\n",
                 encoding="utf-8")
    r = run("tts", "batch", p, "--out", tmp_path / "o", "--model", "espeak:en-us", "--json")
    assert r.exit_code == 1
    rows = {x["id"]: x for x in json.loads(r.stdout)["rows"]}
    assert rows["en"]["status"] == "ok" and rows["emoji"]["status"] == "ok"
    assert "cannot read Chinese" in rows["zh"]["error"] and "cannot read Chinese" in rows["mix"]["error"]

    r = run("tts", "batch", p, "--out", tmp_path / "o2", "--model", "espeak:en-us", "--json", "--allow-mixed")
    rows = {x["id"]: x for x in json.loads(r.stdout)["rows"]}
    assert rows["mix"]["status"] == "ok" and rows["zh"]["status"] != "ok"  # nothing left to say in zh
    assert "dropped Chinese" in caplog.text


# ---- 9: test wallets ---------------------------------------------------------------------------------
def test_sim_wallets_live_under_asn_home_and_sim_commands_find_them(tmp_path, monkeypatch, _isolated_env):
    pytest.importorskip("bittensor")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = run("sim", "wallet", "m1")
    assert r.exit_code == 0, r.output
    assert (_isolated_env / "wallets" / "m1" / "hotkeys" / "default").is_file()
    assert not (tmp_path / "home" / ".bittensor").exists()
    assert run("sim", "init", "--block-seconds", "1").exit_code == 0
    r = run("sim", "register", "--wallet.name", "m1", "--json")
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(r.stdout)["uid"], int)
    d = json.loads(run("sim", "wallet", "m2", "--json").stdout)
    assert d["path"] == str(_isolated_env / "wallets") and d["hotkey"].startswith("5")
    from audiosubnet.config import load_settings

    assert load_settings(**{"subnet.network": "sim"}).subnet.wallet_path == _isolated_env / "wallets"
    assert str(load_settings().subnet.wallet_path) == "~/.bittensor/wallets"


# ---- 10: asn score's progress knows its total --------------------------------------------------------
class _FakeScoring:
    """Scores every clip 0.5 (the folder logic is under test, not the models)."""

    class settings:  # noqa: N801
        max_seconds = 60.0

    version, profile = "asn-score-test+p", "p"

    def score(self, items):
        from audiosubnet.scoring.pipeline import ScoreResult

        return [ScoreResult(0.5, id=i.id) for i in items]


def test_score_folder_reports_its_total_before_the_first_row(tmp_path):
    from audiosubnet import audio
    from audiosubnet.scoring.files import score_folder

    clip = audio.encode(audio.Audio([0.1, -0.1] * 8000, 16000), "wav")
    rows = []
    for i in range(20):
        (tmp_path / f"{i}.wav").write_bytes(clip)
        rows.append(f"{i},{i}.wav,Hello number {i}.")
    (tmp_path / "manifest.csv").write_text("id,file,text\n" + "\n".join(rows) + "\n")
    seen: list = []
    summary = score_folder(tmp_path, _FakeScoring(), on_rows=lambda n: seen.append(("total", n)),
                           progress=lambda n: seen.append(("done", n)))
    assert seen[0] == ("total", 20) and sum(n for k, n in seen if k == "done") == 20
    assert len(summary.results) == 20
