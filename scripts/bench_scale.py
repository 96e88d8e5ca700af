"""Scaling of `asn mine --devices` over the GPUs of one host: the miner benchmark on one device, then on all.

    python scripts/bench_scale.py --devices all -- --random-mms full --device cuda --workers 8 \
        --client-procs 16 --concurrency 64,256,512 --seconds 20
    python scripts/bench_scale.py --devices cpu:2 -- --quick --model fake:delay_ms=50,max_batch=16   # smoke test

Runs scripts/bench_miner.py twice with the arguments after `--`: first with `--devices` set to the first device
of the list (`all` -> `0`, `0,2` -> `0`, `cpu:N` -> `cpu:1`: one engine process, the same code path), then with
the whole list. For each run it takes the best level (audio seconds served per wall second, x real time) and
reports scaling = best(all) / (N x best(one)), with the goal 0.9, and each device's share of the batches and how
busy its engine was at that level. Prints JSON; writes it to --json PATH and to $ASN_BENCH_OUT/bench_scale.json.

A low figure with one device busy near 1.0 and the others idle means routing; every device well below 1.0 means
the front (HTTP workers, the hub's queue, or the load generator: see miner_cpu_cores and raise --workers,
--client-procs or the client count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def first_device(spec: str) -> str:
    text = spec.strip().lower()
    if text == "all":
        return "0"
    if text.startswith("cpu:"):
        return "cpu:1"
    return text.split(",")[0].strip()


def run_bench(devices: str, extra: list[str], out: Path) -> dict:
    cmd = [sys.executable, str(HERE / "bench_miner.py"), *extra, "--devices", devices, "--json", str(out)]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    env = {k: v for k, v in os.environ.items() if k != "ASN_BENCH_OUT"}  # this script writes its own result
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env).returncode
    if rc != 0 or not out.exists():
        raise SystemExit(f"bench_miner.py --devices {devices} failed (exit status {rc})")
    return json.loads(out.read_text())


def best_level(result: dict) -> dict:
    levels = [lv for lv in result["levels"] if lv["ok"]]
    if not levels:
        raise SystemExit(f"bench_miner.py --devices {result.get('devices')}: no request succeeded")
    return max(levels, key=lambda lv: lv["x_real_time"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", required=True, help="the device list of the full run: all | 0,1,... | cpu:N")
    ap.add_argument("--json", type=Path, help="also write the JSON result here")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="-- then bench_miner.py's own arguments")
    args = ap.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if "--devices" in extra or "--json" in extra:
        ap.error("give --devices and --json before `--`: this script sets them for each run")

    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        one = run_bench(first_device(args.devices), extra, Path(tmp) / "one.json")
        full = run_bench(args.devices, extra, Path(tmp) / "all.json")
    b1, bn = best_level(one), best_level(full)
    n = len(bn.get("devices") or {}) or 1
    scaling = bn["x_real_time"] / (n * b1["x_real_time"]) if b1["x_real_time"] else 0.0
    result = {
        "devices": args.devices, "engines": n, "goal": 0.9, "scaling": round(scaling, 3),
        "one": {k: b1.get(k) for k in ("clients", "req_per_s", "x_real_time", "p50_ms", "p99_ms", "mean_batch",
                                       "miner_cpu_cores", "devices")},
        "all": {k: bn.get(k) for k in ("clients", "req_per_s", "x_real_time", "p50_ms", "p99_ms", "mean_batch",
                                       "miner_cpu_cores", "devices")},
        "runs": {"one": one, "all": full},
    }
    print(f"one engine ({first_device(args.devices)}): {b1['x_real_time']}x real time at {b1['clients']} clients; "
          f"{n} engines ({args.devices}): {bn['x_real_time']}x at {bn['clients']} clients; "
          f"scaling {scaling:.2f} of {n}x (goal 0.90)", file=sys.stderr)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    out_dir = os.environ.get("ASN_BENCH_OUT")
    for path in [args.json, Path(out_dir) / "bench_scale.json" if out_dir else None]:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
