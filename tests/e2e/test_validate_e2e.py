"""End to end on the simulated chain: `asn validate` against an adversarial subnet, every participant a real process
on loopback (scripts/sim_attack.py builds it): the default voice, two espeak-ng twins, cheaters (silence, noise, a
fixed clip, another sentence, too slow, HTTP 500, garbage) and relays of the honest miners (resampled, gain,
noise, 2-3 % speed changes, MP3, edited text). After six rounds the weights on the chain rank honest > espeak >
every cheater, every cheater at <= 5 % of honest, each twin >= 40 % of the other, no round past its deadline.
Then the validator is killed with SIGKILL in the middle of a round and restarted: its scores resume from disk.
"""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def attack_module():
    spec = importlib.util.spec_from_file_location("sim_attack", ROOT / "scripts" / "sim_attack.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def state_file(home: Path) -> Path:
    found = list((home / "validator").glob("*/state.json"))
    return found[0] if found else home / "validator" / "missing" / "state.json"


def test_validator_pays_honest_work_only_and_survives_kill9(tmp_path):
    sim = attack_module()
    net = sim.build(tmp_path)
    try:
        v = net.validator(rounds=6)
        assert v.wait(timeout=900) == 0, net.log("validator")[-4000:]
        res = sim.results(net)
        report = sim.table(res)
        print(report)
        assert res["ok"], report + "\n" + net.log("validator")[-3000:]
        status = res["status"]
        assert status["slow"] == "timeout" and status["http500"] == "http"
        assert {status[n] for n in ("silence", "noise", "fixed", "wrong", "garbage")} == {"zero"}
        assert "relay" in {status[n] for n in sim.RELAYS}, status
        assert len(res["rounds"]) == 6

        # ---- kill -9 in the middle of a round, restart, resume ------------------------------------
        home = net.workdir / "home"
        path = state_file(home)
        before_round = json.loads(path.read_text())["round"]
        v = net.validator(rounds=1000)
        deadline = time.monotonic() + 300
        while json.loads(path.read_text())["round"] < before_round + 1:  # one more round done
            assert time.monotonic() < deadline and v.poll() is None, net.log("validator")[-3000:]
            time.sleep(0.2)
        time.sleep(random.uniform(0.5, 2.0))  # inside the next round (a round takes seconds here)
        v.send_signal(signal.SIGKILL)
        v.wait()
        before = json.loads(path.read_text())  # the file is whole: written atomically
        v = net.validator(rounds=1)
        assert v.wait(timeout=300) == 0, net.log("validator")[-3000:]
        after = json.loads(path.read_text())
        assert after["round"] == before["round"] + 1
        honest = str(net.uids["honest"])
        assert after["miners"][honest]["ema"] > 0.5 * before["miners"][honest]["ema"] > 0  # resumed, not reset
        assert f"round {before['round']} resumed" in net.log("validator")
    finally:
        net.stop()
