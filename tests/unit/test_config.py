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
