#!/usr/bin/env python
"""Scoring throughput: clips per second through the full pipeline (checks + fingerprints + ASR + MOS
[+ speaker similarity]) at several batch sizes.

    # CPU, the offline stack (tiny.en + DNSMOS), 10 s clips of the Piper voice
    python scripts/bench_scoring.py
    # GPU stack, full-size random-weight models (Whisper large-v3-turbo, UTMOS, WavLM x-vector;
    # DNSMOS with its real weights on torch), 30 s clips, batches 1/8/32
    python scripts/bench_scoring.py --device cuda --random-weights
    # the same code path on CPU with tiny configs (a quick check)
    python scripts/bench_scoring.py --random-weights --tiny --batches 1,4 --seconds 10

Random weights decode a fixed number of tokens per clip (--new-tokens, default 100 as in
gpu_anchor.py). Every item comes from one miner (no copy detection zeroes them) and the
fingerprint history is not kept. Reports medians over --reps runs after a warm-up run per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("river", "morning", "garden", "silver", "window", "yellow", "bridge", "market", "pencil", "summer",
         "harbor", "candle", "forest", "thunder", "basket", "velvet", "orange", "meadow", "lantern", "pocket")


def speechlike(seconds: float, seed: int, sr: int = 16000):
    """Noise with a syllable-rate envelope, phrase pauses and a random pitch-like tint: passes the
    sanity checks and never matches another seed's fingerprint."""
    from audiosubnet.audio import Audio

    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    syll = np.clip(np.sin(2 * np.pi * (3.5 + r.random()) * t + r.random() * 6), 0, None) ** 2
    phrase = (np.sin(2 * np.pi * (0.25 + 0.1 * r.random()) * t + r.random() * 6) > -0.6).astype(np.float64)
    x = r.standard_normal(len(t)) * syll * phrase
    x += 0.5 * np.sin(2 * np.pi * (110 + 60 * r.random()) * t) * syll * phrase
    return Audio((0.15 * x / np.abs(x).max()).astype(np.float32), sr)


def synthetic_items(n: int, seconds: float, clone: bool):
    from audiosubnet.scoring import ScoreItem

    items = []
    ref = speechlike(8.0, 10_000) if clone else None
    for i in range(n):
        r = np.random.default_rng(i)
        text = " ".join(r.choice(WORDS, size=max(3, int(seconds * 2.2)))).capitalize() + "."
        items.append(ScoreItem(text, speechlike(seconds, i), task="clone" if clone else "tts", reference=ref,
                               uid=0, hotkey="bench"))
    return items


def piper_items(n: int, seconds: float, clone: bool, cache):
    """n distinct clips of about `seconds` of the offline Piper voice, each with its exact text."""
    import csv

    from audiosubnet.audio import Audio
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.scoring import ScoreItem

    root = Path(__file__).resolve().parents[1]
    sentences = [r["text"] for r in csv.DictReader((root / "tts_source" / "tts_prompts.csv").open(encoding="utf-8"))]
    sentences += ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore.",
                  "Please remember to bring your umbrella tomorrow morning.",
                  "We walked along the river until the sun went down."]
    with cache.engine("piper:en_US-joe-medium") as e:
        audios = e.synthesize([SynthesisRequest(s) for s in sentences])
    sr = audios[0].sample_rate
    gap = np.zeros(int(0.2 * sr), np.float32)
    items = []
    for i in range(n):
        parts, texts, total, k = [], [], 0.0, i
        while total < seconds:
            a = audios[k % len(audios)]
            parts += [a.samples, gap]
            texts.append(sentences[k % len(sentences)])
            total += a.duration + 0.2
            k += 3  # a different sequence of sentences for every clip
        ref = audios[(i + 1) % len(audios)] if clone else None
        items.append(ScoreItem(" ".join(texts), Audio(np.concatenate(parts), sr), task="clone" if clone else "tts",
                               reference=ref, uid=0, hotkey="bench"))
    return items


def env_info(device: str) -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = f"{ort.__version__} {ort.get_available_providers()}"
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def main() -> int:
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
    ap.add_argument("--clone", action="store_true", help="clone tasks (adds speaker similarity)")
    ap.add_argument("--asr-batch", type=int, default=32)
    ap.add_argument("--json", dest="json_path", default=None, help="write results here")
    args = ap.parse_args()

    from audiosubnet.config import ScoreSettings
    from audiosubnet.engines.cache import ModelCache
    from audiosubnet.engines.device import Placement
    from audiosubnet.scoring import Scoring

    place = Placement.resolve(args.device, args.dtype)
    cache = ModelCache(None, place.device, place.dtype)
    seconds = args.seconds or (30.0 if args.random_weights else 10.0)
    batches = [int(b) for b in (args.batches or ("1,8,32" if args.random_weights else "1,8")).split(",")]
    mos = [] if args.dnsmos == "off" else ["dnsmos"]
    if args.random_weights and not args.no_utmos:
        mos.append("utmos")
    if not mos:
        ap.error("nothing to measure naturalness with: keep DNSMOS or UTMOS")
    settings = ScoreSettings(preset="gpu" if args.random_weights else "offline", mos_models=",".join(mos),
                             dnsmos_backend="auto" if args.dnsmos in ("auto", "off") else args.dnsmos,
                             asr_batch=args.asr_batch, max_seconds=max(60.0, seconds + 1),
                             min_chars_per_s=1.0, max_chars_per_s=60.0)
    scoring = Scoring(settings, cache=cache)
    print(f"plan: {scoring.plan}", flush=True)
    print("env:", json.dumps(env_info(place.device)), flush=True)
    t = time.perf_counter()
    if args.random_weights:
        from audiosubnet.bench.random_scorers import install_random_scorers

        installed = install_random_scorers(scoring, tiny=args.tiny, new_tokens=args.new_tokens)
        print(f"random-weight models: {installed}", flush=True)
        items = synthetic_items(max(batches), seconds, args.clone)
    else:
        items = piper_items(max(batches), seconds, args.clone, cache)
    scoring.warmup(clone=args.clone)
    print(f"setup {time.perf_counter() - t:.1f} s; clips of {np.mean([i.audio.duration for i in items]):.1f} s",
          flush=True)

    rows = []
    for b in batches:
        batch = items[:b]
        res = scoring.score(batch, remember=False)  # warm-up at this shape
        bad = [r.reason for r in res if r.reason and "WER" not in r.reason]
        if bad:
            print(f"warning: {len(bad)} items zeroed before the models: {bad[:2]}", flush=True)
        times, stages = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            scoring.score(batch, remember=False)
            times.append(time.perf_counter() - t)
            stages.append(dict(scoring.timings))
        med = statistics.median(times)
        stage_med = {k: round(statistics.median(s.get(k, 0.0) for s in stages), 4) for k in stages[0]}
        audio_s = sum(it.audio.duration for it in batch)
        row = {"batch": b, "seconds": round(med, 4), "clips_per_s": round(b / med, 2),
               "x_realtime": round(audio_s / med, 1), "mean_clip_s": round(audio_s / b, 2), "stages_s": stage_med}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{'batch':>5} {'s/batch':>9} {'clips/s':>8} {'x realtime':>10}  stages (s)")
    for r in rows:
        st = "  ".join(f"{k.replace('score:', '')}={v:.3f}" for k, v in r["stages_s"].items())
        print(f"{r['batch']:>5} {r['seconds']:>9.3f} {r['clips_per_s']:>8.2f} {r['x_realtime']:>10.1f}  {st}")
    if args.json_path:
        out = {"args": vars(args), "plan": str(scoring.plan), "env": env_info(place.device), "clip_s": seconds,
               "rows": rows}
        Path(args.json_path).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
