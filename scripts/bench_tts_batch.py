"""Benchmark `asn tts batch`: RTF of the default voice on the sample CSV, and the job's overhead.

    python scripts/bench_tts_batch.py [--csv tts_source/tts_prompts.csv] [--model auto] [--repeats 3]

Side by side in one process (the model loaded once, warm):
  raw    - the engine alone: the same rows, in the same batches, timing only synthesize()
  job    - the real job (`run_tts_batch` with --force) into a temp folder: parse, resume check,
           engine, encode, atomic writes, manifest flushes
RTF = seconds of compute / seconds of audio; overhead = job wall time / raw engine time - 1.
Prints a markdown table and JSON (also to results/bench_tts_batch.json when ASN_BENCH_OUT is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from audiosubnet.engines import registry
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.registry import build_cache
from audiosubnet.jobs.tts_batch import BatchOptions, read_prompts, run_tts_batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default="tts_source/tts_prompts.csv")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--format", default="wav")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-batch", type=int, default=16)
    args = ap.parse_args()

    model = registry.canonical_id(args.model)
    cache = build_cache("cpu", "float32", None)
    rows = [r for r in read_prompts(Path(args.csv)) if not r.error]
    with cache.engine(model) as engine:
        engine.warmup()
        caps = engine.capabilities
    step = max(1, min(args.max_batch, caps.max_batch)) if caps.batching else 1
    batches = [rows[i:i + step] for i in range(0, len(rows), step)]

    raw_times, job_times, job_engine, audio_s = [], [], [], 0.0
    for _ in range(args.repeats):
        with cache.engine(model) as engine:
            t0 = time.perf_counter()
            audio_s = 0.0
            for b in batches:
                out = engine.synthesize([SynthesisRequest(r.text, speed=r.speed) for r in b])
                audio_s += sum(a.duration for a in out)
            raw_times.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            opts = BatchOptions(out_dir=Path(tmp), fmt=args.format, model=model, force=True, max_batch=args.max_batch)
            t0 = time.perf_counter()
            s = run_tts_batch(Path(args.csv), opts, cache)
            job_times.append(time.perf_counter() - t0)
            job_engine.append(s.engine_seconds)
            assert s.failed == 0, [r.error for r in s.rows if r.error]

    raw, job = statistics.median(raw_times), statistics.median(job_times)
    result = {
        "model": model, "rows": len(rows), "batch": step, "audio_s": round(audio_s, 2), "cpu_count": os.cpu_count(),
        "raw_engine_s": round(raw, 3), "raw_rtf": round(raw / audio_s, 4),
        "job_wall_s": round(job, 3), "job_rtf": round(job / audio_s, 4),
        "job_engine_s": round(statistics.median(job_engine), 3),
        "overhead_vs_raw": round(job / raw - 1, 4),
        "overhead_inside_job": round(job / statistics.median(job_engine) - 1, 4),
        "repeats": args.repeats,
        "raw_runs": [round(x, 3) for x in raw_times],
        "job_runs": [round(x, 3) for x in job_times],
    }
    print(f"| model | rows | audio s | raw engine RTF | job RTF | job overhead vs raw |\n|---|---|---|---|---|---|\n"
          f"| {model} | {len(rows)} | {audio_s:.1f} | {result['raw_rtf']:.4f} | {result['job_rtf']:.4f} | "
          f"{100 * result['overhead_vs_raw']:+.1f}% |")
    print(json.dumps(result, indent=1))
    if os.environ.get("ASN_BENCH_OUT"):
        Path(os.environ["ASN_BENCH_OUT"], "bench_tts_batch.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
