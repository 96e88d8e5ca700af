from __future__ import annotations

import pytest

from audiosubnet.config import load_settings, parse_bytes, settings_origins
from audiosubnet.errors import ConfigError


def test_precedence_flag_env_file_default(tmp_path, monkeypatch):
    cfg = tmp_path / "asn.toml"
    cfg.write_text('device = "cuda:3"\nmodel = "espeak:en-gb"\n[mine]\nport = 7000\nqueue_size = 9\n')
    monkeypatch.setenv("ASN_CONFIG", str(cfg))
    monkeypatch.setenv("ASN_MODEL", "espeak:en-us")
    monkeypatch.setenv("ASN_MINE__PORT", "7100")
    s = load_settings(**{"mine.port": 7200, "voice": None})
    assert s.mine.port == 7200  # flag beats env and file
    assert s.model == "espeak:en-us"  # env beats file
    assert s.device == "cuda:3"  # file beats default
    assert s.mine.queue_size == 9
    assert s.tts.format == "wav"  # default
    origins = {k: o for k, _, o in settings_origins(**{"mine.port": 7200})}
    assert origins["mine.port"] == "flag"
    assert origins["model"] == "env ASN_MODEL"
    assert origins["device"].startswith("file ") and str(cfg) in origins["device"]
    assert origins["mine.queue_size"].startswith("file ")
    assert origins["tts.format"] == "default"


def test_config_file_in_cwd_and_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asn.toml").write_text('[tts]\nformat = "flac"\n')
    assert load_settings().tts.format == "flac"


def test_home_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASN_HOME", str(tmp_path / "h"))
    assert load_settings().home == tmp_path / "h"


def test_missing_explicit_config_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ASN_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="ASN_CONFIG"):
        load_settings()


def test_invalid_values_are_one_line_config_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="mine.port"):
        load_settings(**{"mine.port": 70000})
    with pytest.raises(ConfigError, match="device"):
        load_settings(device="tpu")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    monkeypatch.setenv("ASN_CONFIG", str(bad))
    with pytest.raises(ConfigError):
        load_settings()


def test_validate_section_reads_env(monkeypatch):
    monkeypatch.setenv("ASN_VALIDATOR__ALPHA", "0.5")
    assert load_settings().validator.alpha == 0.5


@pytest.mark.parametrize("text,value", [("8GiB", 8 * 2**30), ("500MB", 500_000_000), ("1.5g", 1_500_000_000),
                                        ("123", 123), ("auto", None), (None, None)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_parse_bytes_rejects_garbage():
    with pytest.raises(ConfigError):
        parse_bytes("lots")


def test_log_lines_follow_a_swapped_stderr(monkeypatch):
    """Logging set up once keeps writing to the current sys.stderr (test runners and daemons swap it)."""
    import io
    import logging

    from audiosubnet.commands import _cli

    monkeypatch.setattr(_cli.err, "_force_terminal", False)  # the plain handler, as under pm2/systemd
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    _cli.setup_logging()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("audiosubnet.test").warning("still heard")
    assert "WARNING audiosubnet.test: still heard" in second.getvalue()
    assert "Logging error" not in second.getvalue()


# ---- unknown keys are errors ---------------------------------------------------------------
def test_unknown_env_variable_names_the_closest_setting(monkeypatch):
    monkeypatch.setenv("ASN_TTS_FORMAT", "flac")  # one underscore: the section separator is two
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "ASN_TTS_FORMAT" in msg and "environment" in msg and "ASN_TTS__FORMAT" in msg
    assert "\n" not in msg


def test_unknown_key_in_the_config_file_names_file_and_closest_key(tmp_path, monkeypatch):
    cfg = tmp_path / "asn.toml"
    cfg.write_text('[tts]\nformt = "flac"\n')
    monkeypatch.setenv("ASN_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "tts.formt" in msg and str(cfg) in msg and "tts.format" in msg


def test_unknown_section_and_top_level_key_in_the_file(tmp_path, monkeypatch):
    cfg = tmp_path / "asn.toml"
    monkeypatch.setenv("ASN_CONFIG", str(cfg))
    cfg.write_text('[mien]\nport = 7000\n')
    with pytest.raises(ConfigError, match="'mien'.*did you mean 'mine'"):
        load_settings()
    cfg.write_text('devcie = "cpu"\n')
    with pytest.raises(ConfigError, match="'devcie'.*did you mean 'device'"):
        load_settings()


def test_unknown_flag_key_is_an_error():
    with pytest.raises(ConfigError, match="mine.prot.*mine.port"):
        load_settings(**{"mine.prot": 9000})


@pytest.mark.parametrize("name", ["ASN_DEBUG", "ASN_HOME", "ASN_NO_PROGRESS", "ASN_CUDA_GRAPHS", "ASN_TORCH_THREADS",
                                  "ASN_ORT_THREADS", "ASN_SCORE_THREADS", "ASN_HUB_TIMEOUT", "ASN_SPEECHT5_XVECTOR",
                                  "ASN_SPEECHT5_VOCODER", "ASN_BENCH_OUT", "ASN_TEST_SEED", "ASN_LOG_LEVEL"])
def test_documented_non_setting_variables_are_allowed(name, monkeypatch, tmp_path):
    monkeypatch.setenv(name, str(tmp_path) if name == "ASN_HOME" else "1" if name != "ASN_LOG_LEVEL" else "debug")
    load_settings()


def test_every_asn_variable_the_code_reads_is_a_setting_or_allowed():
    """Grep the package for os.environ reads of ASN_* names: each must be a setting or on the allow-list."""
    import re
    from pathlib import Path

    import audiosubnet
    from audiosubnet.config import ENV_NOT_SETTINGS, env_names

    root = Path(audiosubnet.__file__).parent
    read = set()
    for path in root.rglob("*.py"):
        read.update(re.findall(r"environ(?:\.get\(|\[)\s*[\"'](ASN_[A-Z0-9_]+)", path.read_text()))
        read.update(re.findall(r"\(\s*\"(ASN_[A-Z0-9_]+)\",\s*\"ASN_", path.read_text()))  # tuples of names
    assert read, "the grep found nothing: the pattern is stale"
    unknown = read - ENV_NOT_SETTINGS - set(env_names())
    assert not unknown


def test_nested_env_for_a_dict_setting_is_allowed(monkeypatch):
    monkeypatch.setenv("ASN_SERVE__VOICES__ALLOY", "piper:en_US-joe-medium")
    assert load_settings().serve.voices == {"alloy": "piper:en_US-joe-medium"}
    monkeypatch.setenv("ASN_MINE__PORT__X", "1")
    with pytest.raises(ConfigError, match="ASN_MINE__PORT__X"):
        load_settings()


def test_unknown_key_exits_2_through_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from audiosubnet.commands.app import app

    monkeypatch.setenv("ASN_MINE_PORT", "9000")
    r = CliRunner().invoke(app, ["config", "show"])
    assert r.exit_code == 2
    assert "ASN_MINE_PORT" in r.output and "ASN_MINE__PORT" in r.output
    assert "Traceback" not in r.output


def test_log_level_setting_sets_the_package_level(tmp_path, monkeypatch):
    import logging

    from audiosubnet.commands import _cli

    cfg = tmp_path / "asn.toml"
    cfg.write_text('log_level = "warning"\n')
    monkeypatch.setenv("ASN_CONFIG", str(cfg))
    assert load_settings().log_level == "WARNING"
    _cli.setup_logging()
    assert logging.getLogger("audiosubnet").level == logging.WARNING
    _cli.setup_logging(verbosity=2)  # a flag beats the setting
    assert logging.getLogger("audiosubnet").level == logging.DEBUG
    monkeypatch.setenv("ASN_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="log_level"):
        load_settings()
