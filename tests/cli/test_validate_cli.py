"""`asn validate` refuses clearly before doing any work: no wallet, an unregistered hotkey."""

from __future__ import annotations

from typer.testing import CliRunner

from audiosubnet.chain.bittensor import create_wallet
from audiosubnet.chain.sim import SimChain
from audiosubnet.commands.app import app

runner = CliRunner()


def test_missing_wallet_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ASN_SUBNET__SIM_PATH", str(tmp_path / "sim.db"))
    SimChain(tmp_path / "sim.db", create=True)
    r = runner.invoke(app, ["validate", "--network", "sim", "--wallet.name", "nobody", "--wallet.path",
                            str(tmp_path / "w"), "--rounds", "1"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "error:" in r.output


def test_unregistered_hotkey_names_the_register_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ASN_SUBNET__SIM_PATH", str(tmp_path / "sim.db"))
    SimChain(tmp_path / "sim.db", create=True).create_subnet(16)
    create_wallet("val", "default", tmp_path / "w")
    r = runner.invoke(app, ["validate", "--network", "sim", "--wallet.name", "val", "--wallet.path",
                            str(tmp_path / "w"), "--rounds", "1"])
    assert r.exit_code == 2, r.output
    assert "not registered" in r.output and "asn sim register" in r.output and "Traceback" not in r.output
