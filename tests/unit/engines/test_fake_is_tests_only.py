"""The `fake` engine is registered by the tests only (tests/asn_test_engines.py), never by the shipped package."""

from __future__ import annotations

import socket
from importlib.metadata import distribution
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from audiosubnet.commands.app import app
from audiosubnet.engines import registry

ROOT = Path(__file__).resolve().parents[3]


def test_the_package_declares_no_fake_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    engines = project["entry-points"]["audiosubnet.engines"]
    assert "fake" not in engines and "piper" in engines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)  # were the model accepted, the miner would serve until stopped
def test_asn_mine_with_the_fake_model_is_an_unknown_model_in_a_normal_install(tmp_path, monkeypatch):
    """The registry as a normal install has it: the package's own entry points, nothing registered in process."""
    shipped = {ep.name: ep for ep in distribution("audiosubnet").entry_points if ep.group == registry.ENTRY_POINT_GROUP}
    assert "fake" not in shipped, "stale install metadata: run `pip install -e .` again"
    monkeypatch.setattr(registry._registry, "_entry_points", shipped)
    monkeypatch.setattr(registry._registry, "_registered", {})
    w = str(tmp_path / "wallets")
    runner = CliRunner()
    assert runner.invoke(app, ["sim", "wallet", "m1", "--wallet.path", w]).exit_code == 0
    assert runner.invoke(app, ["sim", "init"]).exit_code == 0
    assert runner.invoke(app, ["sim", "register", "--wallet.name", "m1", "--wallet.path", w]).exit_code == 0
    r = runner.invoke(app, ["mine", "--network", "sim", "--wallet.name", "m1", "--wallet.path", w, "--model", "fake",
                            "--no-publish", "--host", "127.0.0.1", "--port", str(_free_port())])
    assert r.exit_code == 2, r.output
    assert "unknown model 'fake'" in r.output and "Traceback" not in r.output


def test_the_tests_register_it_as_an_entry_point_of_this_environment():
    eps = {ep.name: ep for ep in registry._registry._eps().values()}
    assert eps["fake"].dist.name == "asn-test-engines"
    assert registry.create("fake:default").model_id == "fake:default"
