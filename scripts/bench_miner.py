"""Benchmark the miner end to end: HTTP + btauth/1 + policy + dynamic batching + engine + encoding.

    python scripts/bench_miner.py --quick                         # smoke test (seconds, CPU, default voice)
    python scripts/bench_miner.py                                 # CPU: 1, 8, 64 clients, default Piper voice
    python scripts/bench_miner.py --random-mms full --device cuda --client-procs 4     # H100, full-size MMS
    python scripts/bench_miner.py --random-mms full --device cuda --devices all --workers 8 --client-procs 8
                                                                  # every GPU of the host (asn mine --devices)

A real `asn mine --network sim` process (this script re-run with --serve) listens on a loopback port, with
wallets and a simulated subnet in a temp folder. For each concurrency level, closed-loop clients (signed
exactly as validators sign: MinerClient) send POST /v1/tts for --seconds; then one client asks --long-repeats
times for a ~30 s utterance (text length calibrated from the measured characters per audio second).

Reports, per level: requests/s, p50/p99 latency, audio seconds served per wall second (x real time), the
miner's mean batch size (from /metrics), errors. Prints a markdown table and JSON (also results/bench_miner.json
when ASN_BENCH_OUT is set, or --json PATH).

`--random-mms full|tiny` builds a random-weight MMS (VITS) model with audiosubnet.bench.random_models.build_mms
and serves `mms:<folder>` (needs torch + transformers). `--model` serves any other model id.

A GPU machine without internet, whose image has torch and transformers (and typically httpx, anyio, h11,
prometheus-client, typer, rich, numpy, huggingface-hub, uvloop) but not the rest: on a machine with PyPI, download
the missing wheels for its Python into a folder (`.whl/` is git-ignored; about 18 MB) and copy it along:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 -d .whl \
      bittensor==11.3.0 bittensor-core==0.1.5 eth-account==0.13.7 eth-abi==6.0.0 eth-keyfile==0.8.1 \
      eth-keys==0.8.0 eth-rlp==3.0.0 eth-utils==6.0.0 eth-hash==0.8.0 eth-typing==6.0.0 hexbytes==2.0.0 rlp==5.0.0 \
      bitarray==3.12.3 ckzg==2.1.8 cytoolz==1.2.0 parsimonious==0.10.0 pycryptodome==3.24.1 qrcode==8.2 \
      websockets==16.1.1 fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 uvicorn==0.54.0 \
      pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 annotated-types==0.8.0 \
      typing-inspection==0.4.5 soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12 httptools==0.9.0
    # on the GPU machine, from the repository root (the folder copied along):
    python3 -m pip install -q --no-index --no-deps .whl/*.whl && \
      python3 scripts/bench_miner.py --random-mms full --device cuda --client-procs 4 --json results/bench_h100.json

The package need not be pip-installed there: this script puts the checkout on PYTHONPATH, and --serve registers
the built-in engines itself when their entry points are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _local  # scripts/_local.py (this script's folder is on sys.path)

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to water the plants on the balcony before you leave for the weekend.",
    "Bittensor miners answer signed requests from validators, who score every answer and set weights on chain.",
    "A gentle breeze carried the smell of rain across the valley, and the old mill wheel began to turn again.",
    "Our meeting moved to Thursday at half past three; bring the quarterly numbers and the draft of the plan.",
    "She opened the letter slowly, read it twice, and then laughed so hard that the whole room turned around "
    "to look at her.",
    "To get to the station, walk two blocks north, turn left at the bakery, and cross the bridge over the canal.",
    "Every evening the lighthouse keeper climbed the spiral stairs, wound the clockwork, and lit the great lamp.",
]
LONG_BASE = ("The history of the river town is written in its bridges. The oldest one, built of grey stone, still "
             "carries carts and bicycles every morning. Farther downstream, a steel bridge opened a century later "
             "and brought the railway, the market, and a crowd of new families. Today children fish from both of "
             "them, and on summer nights the whole town walks across to hear music in the park. ")


# ---- the miner process (--serve) ---------------------------------------------------------------------
def _ensure_engines() -> None:
    """Register the built-in engines when the package is not pip-installed (no entry points)."""
    import importlib

    from audiosubnet.engines import registry

    have = set(registry.engine_names())
    for name, (module, cls) in {"piper": ("piper", "PiperEngine"), "espeak": ("espeak", "EspeakEngine"),
                                "mms": ("mms", "MmsEngine")}.items():
        if name in have:
            continue
        try:
            registry.register(getattr(importlib.import_module(f"audiosubnet.engines.{module}"), cls))
        except Exception as e:  # an engine whose dependencies are missing is simply not offered
            print(f"engine {name} unavailable: {e}", file=sys.stderr)
    if "fake" not in have:
        _local.install_test_engines()


def serve(flags_json: str) -> None:
    from audiosubnet.commands._cli import setup_logging
    from audiosubnet.config import load_settings
    from audiosubnet.miner.server import run_miner

    setup_logging(0, quiet=True)
    _ensure_engines()
    run_miner(load_settings(**json.loads(flags_json)))


# ---- load generation ---------------------------------------------------------------------------------
def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


async def _closed_loop(endpoint: str, hotkey: str, wallet_dir: str, clients: int, seconds: float,
                       seed: int, timeout_s: float) -> list[tuple[float, int, float, int, str]]:
    """`clients` workers, each sending one request after another for `seconds`.
    Returns (latency s, status, audio s, characters, error) per request."""
    from audiosubnet.chain.bittensor import load_wallet
    from audiosubnet.validator.client import MinerClient

    wallet = load_wallet("val", "default", wallet_dir)
    out: list[tuple[float, int, float, int, str]] = []
    stop = time.perf_counter() + seconds
    async with MinerClient(wallet, timeout_s=timeout_s, max_connections=clients + 8,
                           max_keepalive=clients + 8) as c:
        async def worker(i: int) -> None:
            k = seed * 7919 + i
            while time.perf_counter() < stop:
                text = PROMPTS[k % len(PROMPTS)]
                k += 1
                r = await c.tts(endpoint, hotkey, {"text": text})
                out.append((r.latency_s, r.status, r.meta.duration_s if r.ok else 0.0, len(text),
                            "" if r.ok else f"{r.status}:{r.error}:{r.code}"))

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return out


def _load_proc(args: tuple) -> list:
    return asyncio.run(_closed_loop(*args))


def run_level(endpoint: str, hotkey: str, wallet_dir: str, clients: int, seconds: float, procs: int,
              timeout_s: float) -> tuple[list, float]:
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    t0 = time.perf_counter()
    if procs == 1:
        rows = asyncio.run(_closed_loop(endpoint, hotkey, wallet_dir, clients, seconds, 0, timeout_s))
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            parts = pool.map(_load_proc, [(endpoint, hotkey, wallet_dir, n, seconds, i, timeout_s)
                                          for i, n in enumerate(shares)])
        rows = [r for part in parts for r in part]
    return rows, time.perf_counter() - t0


def _tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of `pid` and its live descendants (Linux /proc; None elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, todo = 0.0, [pid]
    try:
        while todo:
            p = todo.pop()
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    except (OSError, ValueError, IndexError):
        return None if total == 0 else total
    return total


def _scrape_devices(base: str) -> dict[str, dict[str, float]]:
    """Per-device counters of an engine pool (--devices) so far: {device: {batches, requests, busy_seconds}}."""
    import httpx

    text = httpx.get(base + "/metrics", timeout=10, trust_env=False).text
    out: dict[str, dict[str, float]] = {}
    for name in ("batches", "requests", "busy_seconds"):
        for dev, v in re.findall(rf'^asn_miner_device_{name}_total\{{device="([^"]+)"\}} (\S+)$', text, re.M):
            out.setdefault(dev, {})[name] = float(v)
    return out


def _scrape_batches(base: str) -> tuple[float, float, float]:
    """(requests in engine calls, engine calls, engine seconds) so far, from the miner's /metrics."""
    import httpx

    text = httpx.get(base + "/metrics", timeout=10, trust_env=False).text

    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))

    return (total("asn_miner_batch_size_sum"), total("asn_miner_batch_size_count"),
            total("asn_miner_engine_seconds_sum"))


def summarize(rows: list, wall: float, clients: int, batches: tuple[float, float]) -> dict:
    ok = [r for r in rows if not r[4]]
    lat = [r[0] for r in ok]
    audio = sum(r[2] for r in ok)
    errors: dict[str, int] = {}
    for r in rows:
        if r[4]:
            errors[r[4]] = errors.get(r[4], 0) + 1
    return {"clients": clients, "requests": len(rows), "ok": len(ok), "wall_s": round(wall, 2),
            "req_per_s": round(len(ok) / wall, 2), "p50_ms": round(1000 * _pct(lat, 50), 1),
            "p99_ms": round(1000 * _pct(lat, 99), 1), "audio_s": round(audio, 1),
            "x_real_time": round(audio / wall, 1), "mean_batch": round(batches[0] / batches[1], 2) if batches[1] else 0,
            "chars_per_audio_s": round(sum(r[3] for r in ok) / audio, 2) if audio else 0.0, "errors": errors}


def _long_texts(n: int, repeats: int, fresh: bool) -> list[str]:
    """`repeats` texts of about `n` characters: the same one each time, or (`fresh`) a new one each time, of
    a length varied by up to 15 % (a validator's prompts are all new: new token and frame counts)."""
    import random

    words, out = LONG_BASE.split(), []
    for i in range(repeats):
        rng = random.Random(i)
        k = int(n * rng.uniform(0.85, 1.15)) if fresh else n
        if fresh:
            rng.shuffle(words)
        base = " ".join(words) + " "
        out.append((base * (k // len(base) + 1))[:k].rsplit(" ", 1)[0] + ".")
    return out


async def _long(endpoint: str, hotkey: str, wallet_dir: str, texts: list[str], timeout_s: float) -> list:
    from audiosubnet.chain.bittensor import load_wallet
    from audiosubnet.validator.client import MinerClient

    out = []
    async with MinerClient(load_wallet("val", "default", wallet_dir), timeout_s=timeout_s) as c:
        for text in texts:
            r = await c.tts(endpoint, hotkey, {"text": text})
            out.append((r.latency_s, r.meta.duration_s if r.ok else 0.0, r.meta.elapsed_ms if r.ok else 0.0,
                        "" if r.ok else f"{r.status}:{r.error}:{r.code}:{r.message}"))
    return out


# ---- orchestration -----------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="auto", help="model id to serve (default: the offline Piper voice)")
    ap.add_argument("--random-mms", choices=("tiny", "full"), help="serve a random-weight MMS model of this size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated client counts")
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per level")
    ap.add_argument("--client-procs", type=int, default=1, help="processes generating load (per level)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--miner-concurrency", type=int, default=1, help="engine calls in flight in the miner")
    ap.add_argument("--workers", type=int, default=1, help="the miner's HTTP worker processes (asn mine --workers)")
    ap.add_argument("--devices", help="one engine process per device (asn mine --devices): all | 0,1,... | cpu:N")
    ap.add_argument("--long-seconds", type=float, default=30.0, help="target length of the single long request")
    ap.add_argument("--long-repeats", type=int, default=5)
    ap.add_argument("--long-fresh", action="store_true",
                    help="a new text (new words, length within 15 %%) for every long request, as a validator sends")
    ap.add_argument("--timeout", type=float, default=60.0, help="client deadline per request")
    ap.add_argument("--quick", action="store_true", help="smoke mode: levels 1,8; 2 s each; one long request")
    ap.add_argument("--json", type=Path, help="also write the JSON result here")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, wallets)")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.quick:
        args.concurrency, args.seconds, args.long_repeats, args.long_seconds = "1,8", 2.0, 1, 10.0

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from audiosubnet.chain.bittensor import create_wallet
    from audiosubnet.chain.sim import SimChain

    tmp = Path(tempfile.mkdtemp(prefix="bench_miner_"))
    model = args.model
    if args.random_mms:
        from audiosubnet.bench.random_models import build_mms

        t0 = time.perf_counter()
        model = f"mms:{build_mms(tmp / f'mms-{args.random_mms}', size=args.random_mms)}"
        print(f"built a random-weight {args.random_mms} MMS model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    wallets = tmp / "wallets"
    miner = create_wallet("miner", "default", wallets)
    val = create_wallet("val", "default", wallets)
    chain = SimChain(tmp / "sim.db", create=True)
    chain.create_subnet(16, weights_rate_limit=0)
    chain.register(16, miner.hotkey, miner.coldkey)
    chain.register(16, val.hotkey, val.coldkey, stake=1e6, validator_permit=True)

    port = _local.free_port()
    base, endpoint = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"
    flags = {"home": str(tmp / "home"), "subnet.network": "sim", "subnet.sim_path": str(tmp / "sim.db"),
             "subnet.wallet_name": "miner", "subnet.wallet_path": str(wallets), "model": model,
             "device": args.device, "dtype": args.dtype, "mine.host": "127.0.0.1", "mine.port": port,
             "mine.max_batch": args.max_batch, "mine.max_wait_ms": args.max_wait_ms,
             "devices": args.devices,
             "mine.concurrency": args.miner_concurrency, "mine.workers": args.workers, "mine.queue_size": 4096,
             "mine.rate_limit_per_min": 0,
             "mine.max_text_chars": 2000, "mine.max_body_bytes": 65536}
    log_path = tmp / "miner.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(flags)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    result: dict = {"model": model, "device": args.device, "dtype": args.dtype, "cpu_count": os.cpu_count(),
                    "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "client_procs": args.client_procs,
                    "workers": args.workers, "devices": args.devices,
                    "levels": []}
    try:
        t0 = time.perf_counter()
        _local.wait_healthy(proc, base, log_path, 600, "the miner")
        import httpx

        info = httpx.get(base + "/v1/info", timeout=10, trust_env=False).json()
        result["served_model"], result["startup_s"] = info["default_model"], round(time.perf_counter() - t0, 1)
        print(f"miner up in {result['startup_s']} s serving {info['default_model']} "
              f"(batch <= {info['models'][0]['max_batch']})", file=sys.stderr)
        # warm the HTTP path and the engine's batch shapes
        run_level(endpoint, miner.hotkey, str(wallets), 4, 1.0, 1, args.timeout)
        for clients in [int(c) for c in args.concurrency.split(",") if c.strip()]:
            before, cpu0, dev0 = _scrape_batches(base), _tree_cpu_s(proc.pid), _scrape_devices(base)
            rows, wall = run_level(endpoint, miner.hotkey, str(wallets), clients, args.seconds, args.client_procs,
                                   args.timeout)
            after, cpu1, dev1 = _scrape_batches(base), _tree_cpu_s(proc.pid), _scrape_devices(base)
            level = summarize(rows, wall, clients, (after[0] - before[0], after[1] - before[1]))
            if after[1] > before[1]:  # time inside engine calls: the rest of a batch's cycle is the miner's
                level["engine_ms_per_batch"] = round(1000 * (after[2] - before[2]) / (after[1] - before[1]), 1)
                level["engine_busy"] = round((after[2] - before[2]) / wall, 2)
            if cpu0 is not None and cpu1 is not None and level["ok"]:  # the miner's CPU, all its processes
                level["miner_cpu_ms_per_req"] = round(1000 * (cpu1 - cpu0) / level["ok"], 2)
                level["miner_cpu_cores"] = round((cpu1 - cpu0) / wall, 2)
            if dev1:  # each device's share: batches, requests, and how busy its engine was
                level["devices"] = {d: {"batches": int(c.get("batches", 0) - dev0.get(d, {}).get("batches", 0)),
                                        "requests": int(c.get("requests", 0) - dev0.get(d, {}).get("requests", 0)),
                                        "busy": round((c.get("busy_seconds", 0) -
                                                       dev0.get(d, {}).get("busy_seconds", 0)) / wall, 2)}
                                    for d, c in dev1.items()}
            result["levels"].append(level)
            print(f"{clients:>3} clients: {level['req_per_s']:8.1f} req/s  p50 {level['p50_ms']:7.1f} ms  "
                  f"p99 {level['p99_ms']:7.1f} ms  {level['x_real_time']:8.1f}x real time  "
                  f"batch {level['mean_batch']:.1f} ({level.get('engine_ms_per_batch', '?')} ms in the engine, "
                  f"busy {level.get('engine_busy', '?')})  miner cpu {level.get('miner_cpu_ms_per_req', '?')} ms/req "
                  f"({level.get('miner_cpu_cores', '?')} cores)  errors {level['errors'] or 0}", file=sys.stderr)
            for d, c in level.get("devices", {}).items():
                print(f"      {d}: {c['batches']} batches, {c['requests']} requests, busy {c['busy']}", file=sys.stderr)
        cps = next((lv["chars_per_audio_s"] for lv in result["levels"] if lv["chars_per_audio_s"]), 15.0)
        n = max(40, int(args.long_seconds * cps))
        texts = _long_texts(n, args.long_repeats, args.long_fresh)
        long_rows = asyncio.run(_long(endpoint, miner.hotkey, str(wallets), texts, args.timeout))
        ok = [r for r in long_rows if not r[3]]
        lat = sorted(1000 * r[0] for r in ok)
        result["long"] = {"chars": len(texts[0]), "fresh": args.long_fresh, "repeats": len(long_rows), "ok": len(ok),
                          "latency_ms_p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if ok else None,
                          "audio_s": round(statistics.median([r[1] for r in ok]), 2) if ok else 0,
                          "latency_ms_median": round(1000 * statistics.median([r[0] for r in ok]), 1) if ok else None,
                          "latency_ms_min": round(1000 * min(r[0] for r in ok), 1) if ok else None,
                          "miner_elapsed_ms_median": round(statistics.median([r[2] for r in ok]), 1) if ok else None,
                          "errors": [r[3] for r in long_rows if r[3]]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["miner_exit"] = proc.returncode
    # the miner's own warnings (a CUDA graph capture that failed, a slow start...) belong with its numbers
    warned = [ln for ln in log_path.read_text(errors="replace").splitlines() if " WARNING " in ln or " ERROR " in ln]
    result["miner_warnings"] = warned[:20]
    for ln in warned[:20]:
        print(f"miner: {ln}", file=sys.stderr)

    print("\n| clients | req/s | p50 ms | p99 ms | x real time | mean batch | miner CPU ms/req | errors |\n"
          "|---|---|---|---|---|---|---|---|")
    for lv in result["levels"]:
        print(f"| {lv['clients']} | {lv['req_per_s']} | {lv['p50_ms']} | {lv['p99_ms']} | {lv['x_real_time']} | "
              f"{lv['mean_batch']} | {lv.get('miner_cpu_ms_per_req', '?')} | {sum(lv['errors'].values())} |")
    lg = result.get("long", {})
    print(f"\nsingle long request: {lg.get('audio_s')} s of audio ({lg.get('chars')} characters) in "
          f"{lg.get('latency_ms_median')} ms median (min {lg.get('latency_ms_min')}, "
          f"p99 {lg.get('latency_ms_p99')} ms) "
          f"over {lg.get('ok')} runs{' of fresh texts' if lg.get('fresh') else ''}")
    print(json.dumps(result, indent=1))
    out_dir = os.environ.get("ASN_BENCH_OUT")
    for path in [args.json, Path(out_dir) / "bench_miner.json" if out_dir else None]:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}", file=sys.stderr)
    failed = any(lv["ok"] == 0 for lv in result["levels"]) or not lg.get("ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
