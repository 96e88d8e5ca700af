"""`asn mine` start-up failures and `asn sim` (CLI through typer's CliRunner; no model is loaded)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from audiosubnet.chain.base import check_registered, register_hint
from audiosubnet.commands.app import app
from audiosubnet.config import load_settings
from audiosubnet.errors import NotRegisteredError
from audiosubnet.miner.server import external_address

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


class NobodyChain:
    network = "test"

    def uid_of(self, netuid, hotkey):
        return None


def test_unregistered_hotkey_names_the_exact_btcli_command():
    s = load_settings(**{"subnet.network": "test", "subnet.wallet_name": "cold", "subnet.wallet_hotkey": "hot"})
    try:
        check_registered(NobodyChain(), s, "5Fhot")
        raise AssertionError("expected NotRegisteredError")
    except NotRegisteredError as e:
        assert e.exit_code == 2 and "not registered on netuid 16" in str(e)
        assert e.hint == ("Register it with `btcli subnets register --netuid 16 --wallet cold --wallet-hotkey hot "
                          "--network test`.")
    assert register_hint(load_settings(), 16) == "btcli subnets register --netuid 16 --wallet default " \
                                                 "--wallet-hotkey default"


def test_external_address():
    s = load_settings(**{"subnet.network": "sim", "mine.port": 9100})
    assert external_address(s) == ("127.0.0.1", 9100)
    s = load_settings(**{"mine.external_ip": "203.0.113.9", "mine.external_port": 443})
    assert external_address(s) == ("203.0.113.9", 443)


def test_asn_sim_and_mine_refusals(tmp_path):
    w = str(tmp_path / "wallets")
    r = _run("mine", "--network", "sim", "--wallet.name", "m1", "--wallet.path", w)
    assert r.exit_code == 2 and "no hotkey 'default' in wallet 'm1'" in r.output
    assert _run("sim", "wallet", "m1", "--wallet.path", w).exit_code == 0
    r = _run("mine", "--network", "sim", "--wallet.name", "m1", "--wallet.path", w)
    assert r.exit_code == 2 and "no simulated chain" in r.output and "asn sim init" in r.output
    assert _run("sim", "init", "--block-seconds", "1", "--weights-rate-limit", "2").exit_code == 0
    r = _run("mine", "--network", "sim", "--wallet.name", "m1", "--wallet.path", w)
    assert r.exit_code == 2 and "is not registered on netuid 16 (sim)" in r.output
    assert f"asn sim register --netuid 16 --wallet.name m1 --wallet.hotkey default --wallet.path {w}" in " ".join(
        r.output.split())
    assert _run("sim", "wallet", "v1", "--wallet.path", w).exit_code == 0
    assert _run("sim", "register", "--wallet.name", "m1", "--wallet.path", w).exit_code == 0
    r = _run("sim", "register", "--wallet.name", "v1", "--wallet.path", w, "--validator", "--stake", "500")
    assert r.exit_code == 0 and r.stdout.strip() == "1"
    r = _run("sim", "list", "--json")
    data = json.loads(r.stdout)
    assert [(n["uid"], n["validator_permit"], n["stake"]) for n in data["neurons"]] == [(0, False, 0.0),
                                                                                      (1, True, 500.0)]
    r = _run("sim", "init", "--block-seconds", "3")
    assert r.exit_code == 2 and "--reset" in r.output
    assert _run("sim", "init").exit_code == 0  # idempotent: keeps the settings it had
    from audiosubnet.chain.base import sim_path
    from audiosubnet.chain.sim import SimChain

    sn = SimChain(sim_path(load_settings())).subnet(16)
    assert (sn.weights_rate_limit, sn.tempo) == (2, 360)
    assert _run("sim", "weights").exit_code == 0
    assert _run("sim", "register", "--hotkey-ss58", "not-an-address").exit_code == 2
