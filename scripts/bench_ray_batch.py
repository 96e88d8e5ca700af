"""What Ray costs for `asn tts batch`: the local job and the Ray job on the same CSV, same seed, one box.

    python scripts/bench_ray_batch.py tts_source/tts_prompts.csv --cpus 2
    python scripts/bench_ray_batch.py prompts.csv --address auto   # a running cluster (`ray start --head`)

Prints, for each: wall seconds, rows/s, and for Ray the start-up (ray.init), the time to the first
row back (actor start + model load + first batch) and the rate after it; checks the outputs match.
"""

from __future__ import annotations

import argparse
import filecmp
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", type=Path)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of a local cluster started here")
    ap.add_argument("--address", default=None, help="an existing cluster instead")
    ap.add_argument("--replicas", type=int, default=None)
    ap.add_argument("--max-batch", type=int, default=16)
    a = ap.parse_args()

    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch

    tmp = Path(tempfile.mkdtemp(prefix="asn-ray-bench-"))
    opts = dict(model=a.model, seed=1, max_batch=a.max_batch)
    t0 = time.perf_counter()
    local = run_tts_batch(a.csv, BatchOptions(out_dir=tmp / "local", **opts), EngineCache(budget_bytes=None,
                                                                                          device="cpu"))
    local_wall = time.perf_counter() - t0

    import ray

    from audiosubnet.jobs.tts_batch_ray import RayOptions, run_tts_batch_ray

    t0 = time.perf_counter()
    if a.address:
        ray.init(address=a.address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init_s = time.perf_counter() - t0
    arrivals: list[float] = []
    t0 = time.perf_counter()
    dist = run_tts_batch_ray(a.csv, BatchOptions(out_dir=tmp / "ray", **opts), RayOptions(replicas=a.replicas),
                             progress=lambda r: arrivals.append(time.perf_counter() - t0))
    ray_wall = time.perf_counter() - t0
    resources = ray.cluster_resources()
    ray.shutdown()

    n = local.ok
    first = min(arrivals) if arrivals else float("nan")
    after = (n - 1) / (ray_wall - first) if n > 1 and ray_wall > first else float("nan")
    same = all(filecmp.cmp(tmp / "local" / f"{r.id}.wav", tmp / "ray" / f"{r.id}.wav", shallow=False)
               for r in local.rows if r.status == "ok")
    print(f"rows: {local.total} ({n} ok), audio {local.audio_seconds:.1f} s; cluster {resources.get('CPU', 0):.0f} "
          f"CPU, {resources.get('GPU', 0):.0f} GPU")
    print(f"local job : {local_wall:6.1f} s  {n / local_wall:5.2f} rows/s")
    print(f"ray job   : {ray_wall:6.1f} s  {n / ray_wall:5.2f} rows/s  (+ ray.init {init_s:.1f} s; first row back "
          f"after {first:.1f} s; then {after:.2f} rows/s)")
    print(f"outputs identical: {same and dist.ok == n}  ({tmp})")


if __name__ == "__main__":
    main()
