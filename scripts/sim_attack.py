"""An adversarial simulated subnet: honest miners, cheaters and relays, one real validator, the weights it sets.

    python scripts/sim_attack.py --workdir /tmp/attack [--rounds 6] [--json out.json] [--check]

Every participant is a real process on loopback: three honest miners (`asn mine` with the default voice, and two
with espeak-ng: deterministic twins), one process of cheaters (scripts/cheaters.py: silence, noise, a fixed clip,
another sentence, too slow, HTTP 500, garbage) and relays (forwarding each prompt to an honest miner with a
validator-permit hotkey of their own, then resampling, changing gain, adding noise, changing speed by 2-3 %,
MP3 round trips, editing the text), and `asn validate` on the simulated chain. It prints the weights as a
Markdown table (each miner's share of the honest default-voice miner's weight) and, with --check, exits 1 unless:
honest > espeak > every cheater; every cheater <= 5 % of honest; each twin >= 40 % of the other; no round's queries
ran past their deadline. The e2e test tests/e2e/test_validate_e2e.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/_local.py, also when loaded by path
import _local  # noqa: E402

NETUID = 16
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "The morning train to the coast was full of students and their heavy bags.",
    "She planted tomatoes, beans and sunflowers along the garden wall.",
    "Our neighbour repairs old bicycles in the small shed behind his house.",
    "The museum opens early on weekends, so we should arrive before the crowds.",
    "A cold wind blew across the lake as the fishermen pulled in their nets.",
    "The library will stay open late during the week before the final exams.",
    "My grandmother keeps her recipes in a wooden box on the kitchen shelf.",
    "We watched the sun go down behind the hills from the top of the old tower.",
]
HONEST = {"honest": "piper", "espeak": "espeak:en-us", "twin": "espeak:en-us"}
CHEATS = ["silence", "noise", "fixed", "wrong", "slow", "http500", "garbage"]
RELAYS = {  # name: (target, edits)
    "relay_piper": ("honest", "resample24k+gain-2db+noise35db"),
    "relay_espeak": ("espeak", "resample24k+gain-2db+noise35db"),
    "relay_fast": ("honest", "speed1.03+resample24k"),
    "relay_slow": ("espeak", "speed0.97+noise35db"),
    "relay_mp3": ("honest", "mp3+gain-2db"),
    "relay_textedit": ("twin", "textedit+resample24k+mp3"),
}
TIMEOUT_S = 15.0
RELAY_TIMEOUT_S = 3.0
_OUTCOME = re.compile(r"INFO audiosubnet\.validator:\s+uid\s+(\d+) \S+ score [\d.]+ ema [\d.]+ \S+ (\w+)")
_RELAY = re.compile(r"relay check: (\d+)/(\d+) seen logs, (\d+) entries, (\d+) bytes, (\d+) candidates, (\d+) relays "
                    r"in ([\d.]+) s")
_ROUND = re.compile(r"round (\d+) \(\w+, block \d+\): .* in ([\d.]+) s \(query ([\d.]+) s, scoring ([\d.]+) s\)")


@dataclass
class Net:
    workdir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    uids: dict[str, int] = field(default_factory=dict)
    hotkeys: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def wallets(self) -> Path:
        return self.workdir / "wallets"

    @property
    def sim(self) -> Path:
        return self.workdir / "sim.db"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ASN_SUBNET__SIM_PATH": str(self.sim), "ASN_HOME": str(self.workdir / "home"),
                "HF_HUB_OFFLINE": "1", "ASN_NO_PROGRESS": "1", "ASN_LOG_LEVEL": "INFO",
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 - the process owns it
        p = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                             cwd=self.workdir)
        self.procs.append(p)
        return p

    def wait_healthy(self, proc: subprocess.Popen, port: int, name: str, timeout: float = 180.0) -> None:
        _local.wait_healthy(proc, f"http://127.0.0.1:{port}", self.workdir / f"{name}.log", timeout, name)

    def log(self, name: str) -> str:
        p = self.workdir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def validator(self, rounds: int) -> subprocess.Popen:
        csv = self.workdir / "prompts.csv"
        csv.write_text("text\n" + "\n".join(PROMPTS) + "\n")
        return self.spawn("validator", [
            "-m", "audiosubnet", "validate", "--network", "sim", "--wallet.name", "val", "--wallet.path",
            str(self.wallets), "--device", "cpu", "--rounds", str(rounds), "--round-interval", "0",
            "--alpha", "0.3", "--timeout", str(TIMEOUT_S), "--weights-every", "1", "--clone-ratio", "0",
            "--prompts", str(csv), "--generated-ratio", "0"])

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def build(workdir: Path) -> Net:
    """The chain, the wallets and every miner, up and healthy."""
    from audiosubnet.chain.bittensor import create_wallet
    from audiosubnet.chain.sim import SimChain

    net = Net(Path(workdir))
    net.workdir.mkdir(parents=True, exist_ok=True)
    chain = SimChain(net.sim, create=True)
    chain.init(block_seconds=1.0, reset=True)
    chain.create_subnet(NETUID, weights_rate_limit=0)
    val = create_wallet("val", "default", net.wallets)
    relay = create_wallet("relay", "default", net.wallets)  # the relays' second hotkey: a validator with a permit
    chain.register(NETUID, val.hotkey, stake=1000, validator_permit=True)
    chain.register(NETUID, relay.hotkey, stake=1000, validator_permit=True)
    for name in [*HONEST, *CHEATS, *RELAYS]:
        w = create_wallet(name, "default", net.wallets)
        net.hotkeys[name] = w.hotkey
        net.uids[name] = int(chain.register(NETUID, w.hotkey))
        net.ports[name] = _local.free_port()
    chain.close()
    for name, model in HONEST.items():
        p = net.spawn(name, ["-m", "audiosubnet", "mine", "--network", "sim", "--wallet.name", name,
                             "--wallet.path", str(net.wallets), "--host", "127.0.0.1", "--port",
                             str(net.ports[name]), "--model", model, "--device", "cpu"])
        net.wait_healthy(p, net.ports[name], name)
    specs = [f"{n}:{n}:{net.ports[n]}" for n in CHEATS]
    specs += [f"{n}:relay:{net.ports[n]}:127.0.0.1:{net.ports[t]}:{net.hotkeys[t]}:{edits}"
              for n, (t, edits) in RELAYS.items()]
    p = net.spawn("cheaters", [str(ROOT / "scripts" / "cheaters.py"), "--sim", str(net.sim), "--wallets",
                               str(net.wallets), "--netuid", str(NETUID), "--relay-wallet", "relay",
                               *[a for s in specs for a in ("--miner", s)]])
    for n in [*CHEATS, *RELAYS]:
        net.wait_healthy(p, net.ports[n], "cheaters")
    return net


def results(net: Net) -> dict:
    """Weights on chain, last statuses, per-round timings and the acceptance checks."""
    from audiosubnet.chain.sim import SimChain

    chain = SimChain(net.sim)
    rows = [r for r in chain.weights(NETUID) if r.hotkey == _val_hotkey(net)]
    chain.close()
    weights = rows[0].weights if rows else {}
    w = {n: float(weights.get(u, 0.0)) for n, u in net.uids.items()}
    state_files = list((net.workdir / "home" / "validator").glob("*/state.json"))
    state = json.loads(state_files[0].read_text()) if state_files else {"miners": {}}
    status = {n: state["miners"].get(str(u), {}).get("last_status") for n, u in net.uids.items()}
    rounds = [dict(round=int(m[1]), total_s=float(m[2]), query_s=float(m[3]), score_s=float(m[4]))
              for m in _ROUND.finditer(net.log("validator"))]
    relay = [dict(logs=int(m[2]), entries=int(m[3]), bytes=int(m[4]), candidates=int(m[5]), relays=int(m[6]),
                  seconds=float(m[7])) for m in _RELAY.finditer(net.log("validator"))]
    by_uid = {u: n for n, u in net.uids.items()}
    history: dict[str, dict[str, int]] = {n: {} for n in net.uids}
    for m in _OUTCOME.finditer(net.log("validator")):
        if int(m[1]) in by_uid:
            h = history[by_uid[int(m[1])]]
            h[m[2]] = h.get(m[2], 0) + 1
    honest = w["honest"]
    cheats = [*CHEATS, *RELAYS]
    checks = {
        "honest > espeak > every cheater": honest > w["espeak"] > max(w[c] for c in cheats)
                                           and honest > w["twin"] > max(w[c] for c in cheats),
        "every cheater <= 5 % of honest": honest > 0 and all(w[c] <= 0.05 * honest for c in cheats),
        "each twin >= 40 % of the other": w["espeak"] >= 0.4 * w["twin"] and w["twin"] >= 0.4 * w["espeak"] > 0,
        "no round past its deadline": bool(rounds) and all(
            r["query_s"] <= TIMEOUT_S + RELAY_TIMEOUT_S + 2.0 for r in rounds),
    }
    return {"weights": w, "share_of_honest": {n: (w[n] / honest if honest else 0.0) for n in w}, "status": status,
            "statuses": history, "relay_checks": relay,
            "rounds": rounds, "checks": checks, "ok": all(checks.values()), "uids": net.uids}


def _val_hotkey(net: Net) -> str:
    from audiosubnet.chain.bittensor import load_wallet

    return load_wallet("val", "default", net.wallets).hotkey


def table(res: dict) -> str:
    what = {**{n: f"honest ({m})" for n, m in HONEST.items()}, **{c: c for c in CHEATS},
            **{n: f"relay of {t}: {e}" for n, (t, e) in RELAYS.items()}}
    lines = ["| miner | what | weight | share of honest | statuses over the rounds |", "|---|---|---|---|---|"]
    for n, v in sorted(res["weights"].items(), key=lambda kv: -kv[1]):
        seen = ", ".join(f"{k} x{c}" for k, c in sorted(res["statuses"][n].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {n} | {what[n]} | {v:.3f} | {100 * res['share_of_honest'][n]:.0f} % | {seen} |")
    lines.append("")
    lines += [f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in res["checks"].items()]
    if res["rounds"]:
        lines.append(f"- rounds: {len(res['rounds'])}, query phase max {max(r['query_s'] for r in res['rounds']):.1f} s"
                     f", round max {max(r['total_s'] for r in res['rounds']):.1f} s")
    if res.get("relay_checks"):
        rc = res["relay_checks"]
        lines.append(f"- relay checks: {rc[0]['logs']} seen-log requests a round, "
                     f"{min(r['bytes'] for r in rc)}-{max(r['bytes'] for r in rc)} bytes, "
                     f"{min(r['seconds'] for r in rc):.2f}-{max(r['seconds'] for r in rc):.2f} s a round")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--check", action="store_true", help="exit 1 unless every acceptance check passes")
    args = ap.parse_args()
    net = build(args.workdir)
    try:
        v = net.validator(args.rounds)
        if v.wait(timeout=1800) != 0:
            print(net.log("validator")[-4000:], file=sys.stderr)
            return 2
        res = results(net)
    finally:
        net.stop()
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0 if res["ok"] or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
