"""Soak test of `asn mine --network sim` (not in CI): mixed valid and invalid load for a long time; reports the
miner's memory and open files over time and any unexpected line in its log.

    python scripts/soak_miner.py                      # 30 minutes, fake engine on the CPU
    python scripts/soak_miner.py --minutes 3 --json   # a short check that it works

Load (all on loopback, in this process): `--clients` signed validator clients in a loop; unsigned, forged,
replayed, wrong-receiver and stranger requests; garbage bodies; connections that trickle headers or bodies or
hang up mid-body; idle keep-alive connections. The miner runs with the engine in its own process (the default).
Memory (RSS of the miner plus its engine process) and open file descriptors are sampled every `--sample-s`;
growth is measured between two windows of 10% of the run (at least a minute each): the one right after the
warm-up (the first 10%: bounded state such as the seen log and the nonce store fills up) and the last one, each
summarised by its median (the heap is trimmed every minute, so single samples swing by tens of MiB). Open files:
the lowest count of each window (the slow connections of the moment come and go above that floor).
Exit status 0 when memory and open files grew <= `--max-growth` (5%) and the log holds no unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _local  # scripts/_local.py (this script's folder is on sys.path)

EXPECTED_LOG = re.compile(r"Invalid HTTP request received|status=(2|4)\d\d|status=499|status=503")


def _tree(pid: int) -> list[int]:
    out = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    return out


def _sample(pid: int) -> dict:
    rss, fds = 0, 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{p}/status") as f:
                rss += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) * 1024
            fds += len(os.listdir(f"/proc/{p}/fd"))
    return {"t": time.monotonic(), "rss_mib": rss / 2**20, "fds": fds}


async def _valid_client(ctx: dict, stop: float, counts: Counter) -> None:
    from audiosubnet.protocol import TtsRequest
    from audiosubnet.validator.client import MinerClient

    texts = ["Short.", "A longer sentence for the soak test, with some words in it.", "x" * 300]
    async with MinerClient(ctx["val"], timeout_s=15) as c:
        while time.monotonic() < stop:
            r = await c.tts(ctx["endpoint"], ctx["hotkey"], TtsRequest(text=random.choice(texts)))
            counts[f"valid:{r.status}"] += 1


async def _invalid_client(ctx: dict, stop: float, counts: Counter) -> None:
    import httpx

    from audiosubnet.chain.bittensor import sign_request

    url = f"http://{ctx['endpoint']}"
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as http:
        while time.monotonic() < stop:
            kind = random.choice(["unsigned", "forged", "replay", "receiver", "stranger", "garbage", "bigvoice"])
            body = json.dumps({"text": "Nope.", **({"voice": "en-us+" + "x" * 60} if kind == "bigvoice" else {})})
            body_b = body.encode()
            headers = {"content-type": "application/json"}
            signer = ctx["stranger"] if kind == "stranger" else ctx["val"]
            receiver = ctx["val"].hotkey if kind == "receiver" else ctx["hotkey"]
            if kind != "unsigned":
                headers.update(sign_request(signer, "POST", "/v1/tts", body_b, receiver))
            if kind == "forged":
                headers["X-Bittensor-Signature"] = "0x" + "00" * 64
            if kind == "garbage":
                body_b = os.urandom(random.randint(1, 4000))
                headers.update(sign_request(signer, "POST", "/v1/tts", body_b, receiver))
            try:
                r = await http.post("/v1/tts", content=body_b, headers=headers)
                counts[f"invalid:{kind}:{r.status_code}"] += 1
                if kind == "replay":
                    r = await http.post("/v1/tts", content=body_b, headers=headers)
                    counts[f"invalid:replayed:{r.status_code}"] += 1
            except httpx.HTTPError as e:
                counts[f"invalid:{kind}:{type(e).__name__}"] += 1
            await asyncio.sleep(0.01)


async def _slow_client(ctx: dict, stop: float, counts: Counter) -> None:
    port = ctx["port"]
    while time.monotonic() < stop:
        kind = random.choice(["headers", "body", "hangup", "idle"])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["slow:connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        try:
            if kind == "idle":
                writer.write(b"GET /health HTTP/1.1\r\nHost: m\r\n\r\n")
            elif kind == "headers":
                writer.write(b"POST /v1/tts HTTP/1.1\r\nHost: m\r\nX-A: ")
            else:
                writer.write(b"POST /v1/tts HTTP/1.1\r\nHost: m\r\nContent-Length: 100000\r\n\r\n{")
            await writer.drain()
            if kind == "hangup":
                await asyncio.sleep(random.random())
                writer.transport.abort()
                counts["slow:hangup"] += 1
                continue
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                with contextlib.suppress(ConnectionError):
                    if kind != "idle":
                        writer.write(b"a")
                        await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not data and reader.at_eof():
                    break
            counts[f"slow:{kind}:closed_after_{int(time.monotonic() - t0)}s"] += 1
        finally:
            writer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=4, help="signed validator clients")
    ap.add_argument("--invalid", type=int, default=4, help="clients sending invalid requests")
    ap.add_argument("--slow", type=int, default=32, help="slow connections held at once")
    ap.add_argument("--model", default="fake:delay_ms=5,ms_per_char=5")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.model.split(":")[0] == "fake":
        _local.install_test_engines()

    from audiosubnet.chain.bittensor import create_wallet
    from audiosubnet.chain.sim import SimChain

    tmp = Path(tempfile.mkdtemp(prefix="asn-soak-"))
    wallets = tmp / "wallets"
    miner_w = create_wallet("miner", "default", wallets)
    val = create_wallet("val", "default", wallets)
    stranger = create_wallet("stranger", "default", wallets)
    chain = SimChain(tmp / "sim.db", create=True)
    chain.init(block_seconds=1.0, reset=True)
    chain.register(16, miner_w.hotkey, miner_w.coldkey)
    chain.register(16, val.hotkey, val.coldkey, stake=1000, validator_permit=True)
    port = _local.free_port()
    env = {**os.environ, "ASN_HOME": str(tmp / "home"), "ASN_SUBNET__SIM_PATH": str(tmp / "sim.db"),
           "ASN_LOG_LEVEL": "INFO", "ASN_MINE__RATE_LIMIT_PER_MIN": "0", "ASN_MINE__HEADER_TIMEOUT_S": "5",
           "ASN_MINE__BODY_TIMEOUT_S": "10", "ASN_MINE__KEEP_ALIVE_S": "5"}
    log_path = tmp / "miner.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "audiosubnet", "mine", "--network", "sim", "--wallet.name",
                                 "miner", "--wallet.path", str(wallets), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu", "--model", args.model, "--no-publish"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            _local.wait_healthy(proc, f"http://127.0.0.1:{port}", log_path, 120, "the miner")
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 2
        ctx = {"val": val, "stranger": stranger, "hotkey": miner_w.hotkey, "endpoint": f"127.0.0.1:{port}",
               "port": port}
        counts: Counter = Counter()
        samples: list[dict] = []
        t_start = time.monotonic()
        stop = t_start + args.minutes * 60

        async def sampler():
            while time.monotonic() < stop:
                samples.append(_sample(proc.pid))
                await asyncio.sleep(min(args.sample_s, max(0.1, stop - time.monotonic())))
            samples.append(_sample(proc.pid))

        async def run():
            tasks = [_valid_client(ctx, stop, counts) for _ in range(args.clients)]
            tasks += [_invalid_client(ctx, stop, counts) for _ in range(args.invalid)]
            tasks += [_slow_client(ctx, stop, counts) for _ in range(args.slow)]
            await asyncio.gather(sampler(), *tasks)

        asyncio.run(run())
        time.sleep(min(10.0, args.sample_s))  # let the deadlines close what the load left open
        samples.append(_sample(proc.pid))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    warm_s = 0.1 * args.minutes * 60
    span = max(60.0, warm_s)
    t0, t1 = samples[0]["t"] + warm_s, samples[-1]["t"]
    first = [s for s in samples if t0 <= s["t"] <= t0 + span] or samples[:1]
    final = [s for s in samples if s["t"] >= t1 - span] or samples[-1:]
    base = {"rss_mib": statistics.median(s["rss_mib"] for s in first)}  # open files: the floors below
    last = {"rss_mib": statistics.median(s["rss_mib"] for s in final)}
    fd_floor = (min(s["fds"] for s in first), min(s["fds"] for s in final))
    unexpected = [line for line in log_path.read_text().splitlines()
                  if ("ERROR" in line or "Traceback" in line or "status=5" in line) and not EXPECTED_LOG.search(line)]
    report = {
        "minutes": args.minutes, "model": args.model, "clients": args.clients, "invalid_clients": args.invalid,
        "slow_connections": args.slow,
        "rss_mib": {"after_warmup": round(base["rss_mib"], 1), "end": round(last["rss_mib"], 1),
                    "window_s": span,
                    "peak": round(max(s["rss_mib"] for s in samples), 1),
                    "growth": round(last["rss_mib"] / base["rss_mib"] - 1, 4)},
        # open files: the lowest count of each window (the slow connections of the moment come and go on top of
        # it; a leak raises the floor), and the count after the load (the deadlines closed what it left open)
        "open_files": {"after_warmup": fd_floor[0], "end": fd_floor[1], "after_load": samples[-1]["fds"],
                       "peak": max(s["fds"] for s in samples),
                       "growth": round(fd_floor[1] / max(1, fd_floor[0]) - 1, 4)},
        "valid": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("valid:")},
        "invalid": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("invalid:")},
        "slow": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("slow:")},
        "unexpected_log_lines": unexpected[:20], "log": str(log_path),
    }
    ok = (report["rss_mib"]["growth"] <= args.max_growth and report["open_files"]["growth"] <= args.max_growth
          and not unexpected and set(report["valid"]) <= {"200"})
    report["ok"] = ok
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.minutes:g} min: RSS {base['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB "
              f"({report['rss_mib']['growth']:+.1%}), open files (floor) {fd_floor[0]} -> {fd_floor[1]} "
              f"({report['open_files']['growth']:+.1%}); valid {report['valid']}; "
              f"{sum(counts[k] for k in counts if k.startswith('invalid:'))} invalid, "
              f"{sum(counts[k] for k in counts if k.startswith('slow:'))} slow; "
              f"{len(unexpected)} unexpected log lines -> {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
