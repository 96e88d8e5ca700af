#!/usr/bin/env python3
"""Time the transformers speech engines (mms, speecht5, bark) through their own code, random weights,
against the H100 kernel-level anchors: a thin wrapper over `asn bench --random-weights --anchors`
(the measuring code is audiosubnet/bench/engines.py; this keeps the script's flags and defaults).

FULL-SIZE random-weight models (`audiosubnet.bench.random_models`: `VitsConfig()` = facebook/mms-tts-eng,
`SpeechT5Config()` + `SpeechT5HifiGanConfig()`, Bark small/large) are saved to a temp folder, loaded through
the engine's real `setup()` (a fresh EngineCache), and timed at each batch size and dtype (one forward pass
per batch, warm-up, CUDA synchronize, median of --reps). Workloads match ../shared/tools/gpu_anchor.py:
  mms       469 characters = 939 VITS tokens, durations forced to 2 frames/token -> 30 s per item
  speecht5  120 tokens, stop head off, 480 decoder steps = 960 frames = 15.4 s per item
  bark      one short sentence, semantic tokens capped (--bark-tokens), batch 1 only

    python scripts/gpu_engines.py --device cuda                     # mms + speecht5, fp32 + fp16, 1..64
    python scripts/gpu_engines.py --device cuda --engines bark --bark-size full
    python scripts/gpu_engines.py --tiny                            # CPU, tiny configs, seconds

Runs from a checkout without installing the package (it puts the repo on sys.path); needs torch,
transformers, numpy, huggingface_hub, pydantic + pydantic-settings and, for speecht5, sentencepiece.
Prints the tables (with "% of anchor"); writes gpu_engines.{json,csv,png,md} to $ASN_BENCH_OUT (or --out) when set.
Exit status 1 when an engine or a batch size failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available; cpu with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="tiny configs on CPU: checks the script in seconds")
    ap.add_argument("--engines", default="mms,speecht5", help="comma list of mms, speecht5, bark")
    ap.add_argument("--batches", default=None, help="batch sizes (default 1,8,16,32,64; tiny 1,2,4)")
    ap.add_argument("--dtypes", default="float32,float16", help="dtypes on CUDA (CPU always float32)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per point (median)")
    ap.add_argument("--bark-size", choices=("small", "full"), default="small", help="suno/bark-small or suno/bark")
    ap.add_argument("--bark-tokens", type=int, default=256, help="cap on Bark's semantic tokens (~5 s of audio)")
    ap.add_argument("--out", default=os.environ.get("ASN_BENCH_OUT"),
                    help="folder for gpu_engines.* (default $ASN_BENCH_OUT)")
    args = ap.parse_args(argv)

    from rich.console import Console

    from audiosubnet.bench import report
    from audiosubnet.bench.runner import BenchConfig, run_bench
    from audiosubnet.bench.workloads import ANCHOR_TARGET
    from audiosubnet.runtime.device import cuda_available

    device = args.device or ("cpu" if args.tiny or not cuda_available() else "cuda")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    engines = ["bark:suno/bark" if e == "bark" and args.bark_size == "full" else e for e in engines]
    batches = [int(b) for b in (args.batches or ("1,2,4" if args.tiny else "1,8,16,32,64")).split(",")]
    cfg = BenchConfig(engines=engines, scorers=[], device=device, dtypes=args.dtypes.split(","), batch_sizes=batches,
                      duration=2.0 if args.tiny else 30.0,
                      random_weights=True, tiny=args.tiny, quality=False, anchors=True, budget_s=float("inf"),
                      min_reps=args.reps, max_reps=args.reps, bark_tokens=args.bark_tokens,
                      command="python scripts/gpu_engines.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    console = Console()
    result = run_bench(cfg, on_event=lambda msg: print("#", msg, file=sys.stderr, flush=True))
    report.render(result, console)
    if args.out:
        paths = report.write_all(result, args.out, stem="gpu_engines")
        print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    missed = [(e, p) for e in result.engines for p in e.points if p.meets_target is False]
    if missed:
        print(f"\n{len(missed)} anchor point(s) below {ANCHOR_TARGET:.0%}: "
              + ", ".join(f"{e.engine} b{p.batch} {e.dtype}" for e, p in missed))
    failed = [e for e in result.engines if e.status in ("error", "unavailable") or any(p.error for p in e.points)]
    return 1 if failed or result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
