"""What Ray costs for a `--ray` job: the local run and the Ray run on the same input, same seed, one box.

    python scripts/bench_ray_batch.py tts_source/tts_prompts.csv --cpus 2
    python scripts/bench_ray_batch.py prompts.csv --address auto   # a running cluster (`ray start --head`)
    python scripts/bench_ray_batch.py music_source/prompts.csv --job music --random-musicgen small --rows 64 \
        --device cuda --max-batch 8                                # a GPU box: one GPU actor per GPU
    python scripts/bench_ray_batch.py tts_target --job score --cpus 2   # a folder with a manifest.csv

Prints, for each: wall seconds, rows/s, and for Ray the start-up (ray.init), the time to the first
result back (actor start + model load + first batch) and the rate after it; checks the outputs match.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import tempfile
import time
from pathlib import Path


def jobs(a, tmp: Path):
    """(local run, Ray run, rows, compare) for the job: each run takes a progress callback."""
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.jobs.ray_runner import RayOptions

    ray_opts = RayOptions(replicas=a.replicas, device=a.device)
    cache = EngineCache(budget_bytes=None, device=a.device)
    if a.job == "score":
        from audiosubnet.config import load_settings
        from audiosubnet.jobs.score_ray import score_folder_ray
        from audiosubnet.scoring import Scoring
        from audiosubnet.scoring.files import score_folder

        def scoring():
            return Scoring(load_settings(**{"score.preset": a.preset}).score, cache=cache)

        return (lambda tick: score_folder(a.input, scoring(), tmp / "local.csv", progress=tick),
                lambda tick: score_folder_ray(a.input, scoring(), tmp / "ray.csv", ray_opts, progress=tick),
                lambda s: len(s.results),
                lambda s: filecmp.cmp(tmp / "local.csv", tmp / "ray.csv", shallow=False))
    if a.job == "music":
        from audiosubnet.jobs.music_batch import MusicBatchOptions, run_music_batch, run_music_batch_ray

        model = a.model
        if a.random_musicgen:
            from audiosubnet.bench.random_music import build_musicgen

            model = f"musicgen:{build_musicgen(tmp / 'musicgen', a.random_musicgen)}"

        def opts(name):
            return MusicBatchOptions(out_dir=tmp / name, model=model, max_batch=a.max_batch, duration_s=a.duration)

        local, dist = (lambda tick: run_music_batch(a.input, opts("local"), cache, progress=tick),
                       lambda tick: run_music_batch_ray(a.input, opts("ray"), ray_opts, progress=tick))
    else:
        from audiosubnet.jobs.tts_batch import BatchOptions, run_tts_batch
        from audiosubnet.jobs.tts_batch_ray import run_tts_batch_ray

        def opts(name):
            return BatchOptions(out_dir=tmp / name, model=a.model, seed=1, max_batch=a.max_batch)

        local, dist = (lambda tick: run_tts_batch(a.input, opts("local"), cache, progress=tick),
                       lambda tick: run_tts_batch_ray(a.input, opts("ray"), ray_opts, progress=tick))

    def same(s) -> bool:
        return all(filecmp.cmp(tmp / "local" / r.file, tmp / "ray" / r.file, shallow=False)
                   for r in s.rows if r.status == "ok")

    return local, dist, lambda s: s.ok, same


def repeat_rows(src: Path, n: int, dst: Path) -> Path:
    """The CSV's rows cycled to `n` rows, ids made unique (and for music, each its own seed)."""
    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    if "id" not in fields:
        fields.insert(0, "id")
    out = []
    for i in range(n):
        row = dict(rows[i % len(rows)])
        row["id"] = f"{row.get('id') or 'row'}-{i:05d}"
        if "seed" in row:
            row["seed"] = str(i)
        out.append(row)
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(out)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input", type=Path, help="the CSV (tts, music) or the folder (score)")
    ap.add_argument("--job", choices=["tts", "music", "score"], default="tts")
    ap.add_argument("--model", default="auto", help="tts: model id; music: model id (default musicgen-small)")
    ap.add_argument("--random-musicgen", choices=["tiny", "small", "medium", "large"], default=None,
                    help="music: a MusicGen of this size with random weights (no download)")
    ap.add_argument("--duration", type=float, default=10.0, help="music: seconds for rows without a duration")
    ap.add_argument("--preset", default="offline", help="score: auto | offline | gpu")
    ap.add_argument("--device", default="cpu", help="models' device in the local run and the actors")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of a local cluster started here")
    ap.add_argument("--address", default=None, help="an existing cluster instead")
    ap.add_argument("--replicas", type=int, default=None)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--rows", type=int, default=None, help="tts, music: the CSV's rows repeated to this many "
                    "(ids made unique; music: one seed each)")
    a = ap.parse_args()
    if a.job == "music" and a.model == "auto":
        a.model = "musicgen:facebook/musicgen-small"

    tmp = Path(tempfile.mkdtemp(prefix="asn-ray-bench-"))
    if a.rows and a.job != "score":
        a.input = repeat_rows(a.input, a.rows, tmp / "input.csv")
    local_run, ray_run, count, same = jobs(a, tmp)
    t0 = time.perf_counter()
    local = local_run(None)
    local_wall = time.perf_counter() - t0

    import ray

    t0 = time.perf_counter()
    if a.address:
        ray.init(address=a.address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init_s = time.perf_counter() - t0
    arrivals: list[float] = []
    t0 = time.perf_counter()
    dist = ray_run(lambda *_: arrivals.append(time.perf_counter() - t0))
    ray_wall = time.perf_counter() - t0
    resources = ray.cluster_resources()
    ray.shutdown()

    n = count(local)
    first = min(arrivals) if arrivals else float("nan")
    after = (n - 1) / (ray_wall - first) if n > 1 and ray_wall > first else float("nan")
    print(f"{a.job}: {n} rows; cluster {resources.get('CPU', 0):.0f} CPU, {resources.get('GPU', 0):.0f} GPU")
    print(f"local run : {local_wall:6.1f} s  {n / local_wall:5.2f} rows/s")
    print(f"ray run   : {ray_wall:6.1f} s  {n / ray_wall:5.2f} rows/s  (+ ray.init {init_s:.1f} s; first result "
          f"back after {first:.1f} s; then {after:.2f} rows/s)")
    print(f"outputs identical: {same(dist) and count(dist) == n}  ({tmp})")


if __name__ == "__main__":
    main()
