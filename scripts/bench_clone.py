#!/usr/bin/env python
"""Voice-cloning benchmarks: pairs per minute on the CPU (offline fallback), clone RTF on a GPU.

CPU (the offline `world` fallback through the real `asn clone watch` pipeline: files, journal,
batching, atomic writes; references are espeak-ng voice variants, texts ~12 words):
    python scripts/bench_clone.py --quick                 # 4 pairs, a smoke run
    python scripts/bench_clone.py --pairs 32              # the number for docs/benchmarks.md

GPU (clone real-time factor = generation seconds / seconds of speech produced; full-size published
architectures with random weights when the weights cannot be downloaded, the length forced so every
run produces --seconds of speech; measured by the `asn bench` runner, audiosubnet/bench/engines.py):
    python scripts/bench_clone.py --device cuda --engine pocket --seconds 30
    python scripts/bench_clone.py --device cuda --engine speecht5-clone --seconds 30 --batch 1 8
    python scripts/bench_clone.py --device cuda --engine pocket --weights hub   # real weights, if cached

On a GPU box without internet (torch 2.11 + transformers 5.17), carry the wheels first; on a machine
with PyPI:  pip download --no-deps -d .whl pocket-tts einops sentencepiece pyworld
and there:  pip install --no-deps .whl/pocket_tts-*.whl .whl/einops-*.whl  (+ sentencepiece if missing)
            pip install --no-deps -e .
Reference point: the old subnet's Bark clone took 82.15 s for 30 s of speech on an H100 (RTF 2.74).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REF_TEXT = "Please call Stella and ask her to bring these things with her from the store."
TEXTS = [
    "The birch canoe slid on the smooth planks, and the boy was there when the sun rose.",
    "Glue the sheet to the dark blue background before the paint dries in the afternoon.",
    "It is easy to tell the depth of a well by dropping a small stone into the water.",
    "These days a chicken leg is a rare dish, and the juice of lemons makes fine punch.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m7", "en+f4", "en-us+klatt", "en-gb-scotland", "en-029"]


# ---- CPU: pairs per minute with the offline fallback ----------------------------------------------
def bench_cpu(pairs: int, model: str, max_batch: int) -> dict:
    from audiosubnet import audio as audiolib
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.jobs.clone_watch import CloneWatcher, WatchOptions

    cache = EngineCache(device="cpu", dtype="float32")
    with cache.engine("espeak:en-us") as e:
        refs = [e.synthesize([SynthesisRequest(REF_TEXT, voice=v)])[0] for v in VOICES]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        opts = WatchOptions(source=root / "src", target=root / "out", processed=root / "done", failed=root / "bad",
                            model=model, settle_s=0.0, max_batch=max_batch, use_watchdog=False)
        opts.source.mkdir()
        # warm-up pair: model loads are not part of the steady-state rate
        _drop(opts.source, "warm", refs[0], TEXTS[0])
        with CloneWatcher(opts, cache) as w:
            t0 = time.perf_counter()
            w.run_once()
            load_s = time.perf_counter() - t0
        for i in range(pairs):
            _drop(opts.source, f"p{i:03d}", refs[i % len(refs)], TEXTS[i % len(TEXTS)])
        with CloneWatcher(opts, cache) as w:
            t0 = time.perf_counter()
            s = w.run_once()
            wall = time.perf_counter() - t0
        assert s.ok == pairs, f"{s.failed} pairs failed"
        audio_s = sum(audiolib.read(p).duration for p in opts.target.glob("p*.wav"))
    return {"engine": model, "device": "cpu", "pairs": pairs, "max_batch": max_batch, "wall_s": round(wall, 2),
            "pairs_per_min": round(60 * pairs / wall, 1), "audio_s": round(audio_s, 1),
            "rtf": round(wall / audio_s, 3), "engine_s": round(s.engine_seconds, 2),
            "first_pair_with_load_s": round(load_s, 2)}


def _drop(folder: Path, stem: str, ref, text: str) -> None:
    from audiosubnet import audio as audiolib

    (folder / f"{stem}.wav").write_bytes(audiolib.encode(ref, "wav"))
    (folder / f"{stem}.txt").write_text(text, encoding="utf-8")


# ---- GPU: clone RTF, through the `asn bench` runner ---------------------------------------------------
def bench_rtf(device: str, engines: list[str], dtype: str, seconds: float, batches: list[int], repeats: int,
              weights: str) -> list[dict]:
    """Clone RTF of `pocket` / `speecht5-clone` (audiosubnet/bench/engines.py): random full-size weights with
    lengths forced to `seconds` of speech, or the published weights (pocket:english) when cached."""
    from audiosubnet.bench.runner import BenchConfig, run_bench

    specs = ["pocket:english" if e == "pocket" and weights == "hub" else e for e in engines]
    cfg = BenchConfig(engines=specs, scorers=[], device=device, dtypes=[dtype], batch_sizes=batches,
                      duration=seconds, random_weights=weights == "random", quality=weights == "hub",
                      budget_s=float("inf"), min_reps=repeats, max_reps=repeats)
    result = run_bench(cfg, on_event=lambda msg: print(msg, file=sys.stderr, flush=True))
    rows = []
    for e in result.engines:
        if e.status != "ok":
            rows.append({"engine": e.spec, "weights": weights, "device": device, "status": e.status,
                         "reason": e.reason})
        for p in e.points:
            rows.append({"engine": e.engine, "weights": weights, "device": e.device, "dtype": e.dtype,
                         "batch": p.batch, "audio_s": round(p.audio_s or 0, 2), "gen_s": p.seconds, "rtf": p.rtf,
                         "x_realtime": p.x_realtime, "voice_prompt_s": e.extra.get("voice_prompt_s"),
                         "vs_old_bark": p.vs_old_subnet, "error": p.error, **(e.quality or {})})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 CPU pairs, 1 GPU repeat")
    ap.add_argument("--device", default="cpu", help="cpu (pairs/min with the offline fallback) or cuda[:N]")
    ap.add_argument("--engine", default=None, help="pairs/min on the CPU: world (default), world:espeak:en-us; "
                    "RTF (cuda, or cpu when named): pocket (default on cuda), speecht5-clone, all")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0, help="speech per GPU request")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="speecht5-clone batch sizes")
    ap.add_argument("--dtype", default="float16", help="speecht5-clone dtype on CUDA")
    ap.add_argument("--weights", choices=["random", "hub"], default="random", help="pocket: random full-size "
                    "weights, or the published ones from the HF cache")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    a = ap.parse_args()

    import logging

    logging.getLogger("pocket_tts").setLevel(logging.ERROR)  # random weights: "no EOS" warnings by design
    rows: list[dict] = []
    rtf_engines = ("pocket", "speecht5-clone", "all")
    if a.engine not in rtf_engines and a.device == "cpu":
        pairs = 4 if a.quick else a.pairs
        rows.append(bench_cpu(pairs, a.engine or "world", a.max_batch))
    else:
        repeats = 1 if a.quick else a.repeats
        engines = ["pocket", "speecht5-clone"] if a.engine == "all" else [a.engine or "pocket"]
        bad = [e for e in engines if e not in ("pocket", "speecht5-clone")]
        if bad:
            ap.error(f"unknown GPU engine {bad[0]}")
        rows += bench_rtf(a.device, engines, a.dtype, a.seconds, a.batch, repeats, a.weights)
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
