#!/usr/bin/env python
"""Scoring throughput: clips per second through each model scorer and the full pipeline (checks +
fingerprints + ASR + MOS [+ speaker similarity], with seconds per stage) at several batch sizes.
A thin wrapper over `asn bench --engines none` (the measuring code is audiosubnet/bench/scorers.py).

    # CPU, the offline stack (tiny.en + DNSMOS + d-vector), 10 s clips of the Piper voice
    python scripts/bench_scoring.py
    # GPU stack, full-size random-weight models (Whisper large-v3-turbo, UTMOS, WavLM x-vector;
    # DNSMOS with its real weights on torch), 30 s clips, batches 1/8/32
    python scripts/bench_scoring.py --device cuda --random-weights
    # the same code path on CPU with tiny configs (a quick check)
    python scripts/bench_scoring.py --random-weights --tiny --batches 1,4 --seconds 10

Random weights decode a fixed number of tokens per clip (--new-tokens, default 100 as in
gpu_anchor.py). Every item comes from one miner (no copy detection zeroes them) and the
fingerprint history is not kept. Reports medians over --reps runs after a warm-up run per batch.
Runs from a checkout without installing the package (it puts the repo on sys.path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="auto (bf16/fp16 on CUDA) | float32 | float16 | bfloat16")
    ap.add_argument("--random-weights", action="store_true", help="GPU stack with random full-size models")
    ap.add_argument("--tiny", action="store_true", help="with --random-weights: tiny configs (CPU check)")
    ap.add_argument("--seconds", type=float, default=None, help="clip length [10 offline, 30 random]")
    ap.add_argument("--batches", default=None, help="comma list [1,8 offline; 1,8,32 random]")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--dnsmos", default="auto", choices=["auto", "torch", "onnxruntime", "off"])
    ap.add_argument("--no-utmos", action="store_true")
    ap.add_argument("--clone", action="store_true", help="the pipeline on clone tasks (adds speaker similarity)")
    ap.add_argument("--asr-batch", type=int, default=32)
    ap.add_argument("--anchors", action="store_true", help="with --random-weights on CUDA: %% of the Whisper anchor")
    ap.add_argument("--json", dest="json_path", default=None, help="write results here")
    args = ap.parse_args(argv)

    from rich.console import Console

    from audiosubnet.bench import report
    from audiosubnet.bench.runner import BenchConfig, run_bench

    random_weights = args.random_weights or args.tiny
    scorers = ["asr"] + ([] if args.dnsmos == "off" else ["dnsmos"])
    if random_weights and not args.no_utmos:
        scorers.append("utmos")
    if len(scorers) == 1:
        ap.error("nothing to measure naturalness with: keep DNSMOS or UTMOS")
    scorers += ["speaker", "pipeline-clone" if args.clone else "pipeline"]
    batches = [int(b) for b in (args.batches or ("1,8,32" if random_weights else "1,8")).split(",")]
    cfg = BenchConfig(engines=[], scorers=scorers, device=args.device, dtypes=[args.dtype], batch_sizes=batches,
                      duration=args.seconds or (30.0 if random_weights else 10.0), random_weights=random_weights,
                      tiny=args.tiny, anchors=args.anchors, budget_s=float("inf"), min_reps=args.reps,
                      max_reps=args.reps, new_tokens=args.new_tokens, asr_batch=args.asr_batch,
                      dnsmos_backend="auto" if args.dnsmos in ("auto", "off") else args.dnsmos,
                      command="python scripts/bench_scoring.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    result = run_bench(cfg, on_event=lambda msg: print(msg, file=sys.stderr, flush=True))
    report.render(result, Console())
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(report.to_json(result), encoding="utf-8")
    return 1 if result.interrupted or any(s.status != "ok" for s in result.scorers) else 0


if __name__ == "__main__":
    raise SystemExit(main())
