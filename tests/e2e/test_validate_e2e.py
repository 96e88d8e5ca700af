"""End to end on the simulated chain: one `asn validate` and six miners, all real processes on loopback.

Miners: honest Piper (`asn mine`), honest espeak (`asn mine --model espeak`), a copier (relays the espeak
miner's answer, re-encoded; espeak-ng renders a text the same way every time, so the copy is the honest
miner's audio — a copy of a VITS voice would be a new rendering, i.e. the copier doing the work), a liar (speaks another text), a silent one and a hanging one. After a few
rounds the weights on the chain rank Piper > espeak > every cheater, cheaters at zero. Then the validator
is killed with SIGKILL in the middle of a round and restarted: its scores resume from disk.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosubnet.chain.bittensor import create_wallet
from audiosubnet.chain.sim import SimChain

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETUID = 16
HERE = Path(__file__).resolve().parent
PROMPTS = [
    "The morning train to the coast was full of students and their heavy bags.",
    "She planted tomatoes, beans and sunflowers along the garden wall.",
    "Our neighbour repairs old bicycles in the small shed behind his house.",
    "The museum opens early on weekends, so we should arrive before the crowds.",
    "A cold wind blew across the lake as the fishermen pulled in their nets.",
]


class Net:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.wallets = tmp / "wallets"
        self.sim = tmp / "sim.db"
        self.home = tmp / "home"
        self.procs: list[subprocess.Popen] = []
        # plain sentences both honest voices can say (espeak-ng stumbles on some generated numbers and dates)
        self.prompts = tmp / "prompts.csv"
        self.prompts.write_text("text\n" + "\n".join(PROMPTS) + "\n")
        self.env = {**os.environ, "ASN_SUBNET__SIM_PATH": str(self.sim), "ASN_HOME": str(self.home),
                    "HF_HUB_OFFLINE": "1", "ASN_NO_PROGRESS": "1", "ASN_LOG_LEVEL": "INFO",
                    "PYTHONPATH": str(HERE.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "a")  # noqa: SIM115 - closed when the test ends
        p = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(p)
        return p

    def validator(self, rounds: int) -> subprocess.Popen:
        return self.spawn("validator", [
            "-m", "audiosubnet", "validate", "--network", "sim", "--wallet.name", "val", "--wallet.path",
            str(self.wallets), "--device", "cpu", "--rounds", str(rounds), "--round-interval", "0", "--alpha", "0.5",
            "--timeout", "15", "--weights-every", "1", "--clone-ratio", "0", "--prompts", str(self.prompts),
            "--generated-ratio", "0"])

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def state_file(home: Path) -> Path:
    found = list((home / "validator").glob("*/state.json"))
    return found[0] if found else home / "validator" / "missing" / "state.json"


def test_validator_ranks_honest_miners_over_cheaters_and_survives_kill9(tmp_path, procs):
    net = Net(tmp_path)
    chain = SimChain(net.sim, create=True)
    chain.init(block_seconds=1.0, reset=True)
    chain.create_subnet(NETUID, weights_rate_limit=0)
    val = create_wallet("val", "default", net.wallets)
    relay = create_wallet("relay", "default", net.wallets)  # the copier's second hotkey, a validator
    chain.register(NETUID, val.hotkey, stake=1000, validator_permit=True)
    chain.register(NETUID, relay.hotkey, stake=1000, validator_permit=True)
    names = ["piper", "espeak", "copier", "liar", "silent", "hang"]
    keys = {n: create_wallet(n, "default", net.wallets) for n in names}
    uids = {n: int(chain.register(NETUID, keys[n].hotkey)) for n in names}
    ports = {n: procs.free_port() for n in names}
    try:
        honest = {"piper": "piper", "espeak": "espeak:en-us"}
        for n, model in honest.items():
            p = net.spawn(n, ["-m", "audiosubnet", "mine", "--network", "sim", "--wallet.name", n, "--wallet.path",
                              str(net.wallets), "--host", "127.0.0.1", "--port", str(ports[n]), "--model", model,
                              "--device", "cpu"])
            procs.wait_healthy(p, ports[n], tmp_path / f"{n}.log")
        for n in ("copier", "liar", "silent", "hang"):
            extra = (["--target-endpoint", f"127.0.0.1:{ports['espeak']}", "--target-hotkey", keys["espeak"].hotkey,
                      "--relay-wallet", "relay"] if n == "copier" else [])
            p = net.spawn(n, [str(HERE / "cheater_miner.py"), "--behaviour", n, "--port", str(ports[n]), "--sim",
                              str(net.sim), "--wallets", str(net.wallets), "--wallet", n, *extra])
            procs.wait_healthy(p, ports[n], tmp_path / f"{n}.log")

        # ---- a few rounds, then the weights on chain ---------------------------------------------
        v = net.validator(rounds=4)
        assert v.wait(timeout=600) == 0, (tmp_path / "validator.log").read_text()[-4000:]
        (row,) = [r for r in chain.weights(NETUID) if r.hotkey == val.hotkey]
        weights = row.weights
        w = {n: weights.get(uids[n], 0.0) for n in names}
        log = (tmp_path / "validator.log").read_text()
        assert w["piper"] > w["espeak"] > 0, (w, log[-4000:])
        for cheat in ("copier", "liar", "silent", "hang"):
            assert w[cheat] < 0.02, (cheat, w, log[-4000:])
        state = json.loads(state_file(net.home).read_text())
        assert state["round"] == 4
        status = {n: state["miners"][str(uids[n])]["last_status"] for n in names}
        assert status["hang"] == "timeout" and status["silent"] == status["liar"] == status["copier"] == "zero", status
        assert "duplicate" in log or "copy" in log

        # ---- kill -9 in the middle of a round, restart, resume ------------------------------------
        v = net.validator(rounds=1000)
        path = state_file(net.home)
        deadline = time.monotonic() + 300
        while json.loads(path.read_text())["round"] < 5:  # one more round done
            assert time.monotonic() < deadline and v.poll() is None, (tmp_path / "validator.log").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(random.uniform(0.5, 3.0))  # inside the next round (a round takes several seconds here)
        v.send_signal(signal.SIGKILL)
        v.wait()
        before = json.loads(path.read_text())  # the file is whole: written atomically
        assert before["round"] >= 5
        v = net.validator(rounds=1)
        assert v.wait(timeout=300) == 0, (tmp_path / "validator.log").read_text()[-3000:]
        after = json.loads(path.read_text())
        assert after["round"] == before["round"] + 1
        piper = str(uids["piper"])
        assert after["miners"][piper]["ema"] > 0.5 * before["miners"][piper]["ema"] > 0  # resumed, not reset
        assert f"round {before['round']} resumed" in (tmp_path / "validator.log").read_text()
    finally:
        net.stop_all()
