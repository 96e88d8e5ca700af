#!/usr/bin/env python
"""Measure the copy detector (audiosubnet.scoring.fingerprint) as a detector.

Copies: renderings by the offline Piper voice and by espeak-ng, each edited the way a copier would
(resampling, gain, white/pink noise at >= 30 dB SNR, MP3/Opus at 64 kbit/s, speed, tempo, pitch,
padding/trimming, and two of these at once), compared with the original.
Non-copies: the same text by the same voice with different seeds (and speeds), the same text by two
voices or espeak variants, different texts by one voice, and an edited independent rendering.

Prints the ROC around the operating point, the true-positive rate per edit family at <= 1 % false
positives and at DEFAULT_THRESHOLD, and the cost (fingerprint per 30 s clip, comparison per pair).

    python scripts/eval_copy_detector.py --n 24 --seed 0 --out copy-eval.json

Runs offline on one CPU core in a few minutes (OMP_NUM_THREADS=1 for comparable timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.scoring import copyedits as ce
from audiosubnet.scoring import dsp
from audiosubnet.scoring import fingerprint as fpm

TEXTS = [
    "Can you believe it's already the end of November?",
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your umbrella tomorrow morning.",
    "She sells sea shells by the sea shore.",
    "The library opens at nine and closes at six.",
    "We walked along the river until the sun went down.",
    "My favorite color is green, like the leaves in spring.",
    "Turn left at the next corner and keep going straight.",
    "The children laughed as the puppy chased its tail.",
    "A cup of hot tea is the best way to start the day.",
    "Seven large ships sailed slowly across the frozen northern sea.",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    "Our train was delayed by forty minutes because of the snow.",
    "He painted the old fence white before the guests arrived.",
    "Could you tell me where the nearest pharmacy is, please?",
    "The museum's new exhibition covers two thousand years of history.",
    "I forgot my keys at the office, so I had to wait outside.",
    "Bright stars filled the sky above the quiet mountain village.",
    "The recipe calls for two eggs, a cup of flour and some butter.",
    "After the storm, the streets were covered with fallen branches.",
    "Thank you for calling; your order will arrive within five days.",
    "The committee will announce the winners early next week.",
    "Fresh bread from the corner bakery smells wonderful in the morning.",
    "Most birds in this region fly south before the first frost.",
    "Please switch off your phones before the performance begins.",
    "The old clock in the hall stopped at a quarter past midnight.",
    "Engineers are testing a quieter engine for the new aircraft.",
    "She practiced the violin every evening for almost three hours.",
    "A gentle breeze carried the scent of roses through the window.",
    "The results of the survey surprised even the researchers themselves.",
    "Let's meet at the coffee shop across from the central station.",
    "Heavy rain is expected along the coast later this afternoon.",
]
PIPER = "piper:en_US-joe-medium"
ESPEAK = "espeak:en-us"
FAMILIES = ["resample", "gain", "white_noise", "pink_noise", "mp3", "opus", "speed", "tempo", "pitch",
            "pad_trim", "combo"]
# the detector's search covers time scales within +-7 % and frequency scales within +-1.5 semitones:
# combinations keep the product of their time (and frequency) scales inside that range
MAX_TIME_SCALE, MAX_SEMITONES = 1.07, 1.5


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))


def draw(family: str, rng: np.random.Generator) -> dict:
    """Random strength for one edit family."""
    if family == "resample":
        return {"rate": int(rng.choice([16000, 24000, 44100, 48000]))}
    if family == "gain":
        return {"db": _signed(rng, 1.0, 6.0)}
    if family in ("white_noise", "pink_noise"):
        return {"snr_db": float(rng.uniform(30.0, 40.0))}
    if family in ("mp3", "opus"):
        return {"kbps": 64}
    if family in ("speed", "tempo"):
        return {"factor": 1.0 + _signed(rng, 0.01, 0.05)}
    if family == "pitch":
        return {"semitones": _signed(rng, 0.25, 1.0)}
    if family == "pad_trim":
        return {"start_s": float(rng.uniform(-0.4, 0.4)), "end_s": float(rng.uniform(-0.4, 0.4))}
    raise ValueError(family)


def draw_combo(rng: np.random.Generator) -> list[tuple[str, dict]]:
    while True:
        f1, f2 = rng.choice([f for f in FAMILIES if f != "combo"], size=2, replace=False)
        steps = [(str(f1), draw(str(f1), rng)), (str(f2), draw(str(f2), rng))]
        time_scale = np.prod([p["factor"] for f, p in steps if f in ("speed", "tempo")])
        semis = sum(12 * np.log2(p["factor"]) for f, p in steps if f == "speed")
        semis += sum(p["semitones"] for f, p in steps if f == "pitch")
        if abs(np.log(time_scale)) <= np.log(MAX_TIME_SCALE) and abs(semis) <= MAX_SEMITONES:
            return steps


def apply(family: str, p: dict, x: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    if family == "resample":
        return ce.resample(x, sr, p["rate"]), p["rate"]
    if family == "gain":
        return ce.gain(x, p["db"]), sr
    if family == "white_noise":
        return ce.add_noise(x, p["snr_db"], "white", rng), sr
    if family == "pink_noise":
        return ce.add_noise(x, p["snr_db"], "pink", rng), sr
    if family in ("mp3", "opus"):
        return ce.codec(x, sr, family, p["kbps"])
    if family == "speed":
        return ce.speed(x, sr, p["factor"]), sr
    if family == "tempo":
        return ce.tempo(x, sr, p["factor"]), sr
    if family == "pitch":
        return ce.pitch_shift(x, sr, p["semitones"]), sr
    if family == "pad_trim":
        return ce.pad_trim(x, sr, p["start_s"], p["end_s"]), sr
    raise ValueError(family)


def fp_of(x: np.ndarray, sr: int) -> fpm.Fingerprint:
    return fpm.fingerprint(dsp.to_16k(Audio(x, sr)))


def synthesize(texts: list[str], seed: int) -> dict[str, list[tuple[np.ndarray, int]]]:
    """{rendering name: [(samples, rate) per text]}."""
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.registry import EngineCache

    cache = EngineCache(device="cpu", dtype="float32")
    out: dict[str, list[tuple[np.ndarray, int]]] = {}

    def run(engine, name: str, **kw) -> None:
        audio = []
        for i, t in enumerate(texts):  # one request at a time: a seed per text
            k = dict(kw)
            if "seed" in k:
                k["seed"] = k["seed"] * 1000 + i
            a = engine.synthesize([SynthesisRequest(t, **k)])[0]
            audio.append((np.asarray(a.samples, np.float32), int(a.sample_rate)))
        out[name] = audio

    with cache.engine(PIPER) as e:
        for s in range(3):
            run(e, f"piper_s{s}", seed=seed * 10 + s)
        run(e, "piper_s3_speed1.1", seed=seed * 10 + 3, speed=1.1)
    with cache.engine(ESPEAK) as e:
        run(e, "espeak")
        run(e, "espeak_speed1.2", speed=1.2)
        run(e, "espeak_f3", voice="en-us+f3")
        run(e, "espeak_m3", voice="en-us+m3")
        run(e, "espeak_gb", voice="en-gb")
    return out


def non_copy_pairs(n: int, rng: np.random.Generator) -> list[tuple[str, str, int, str, int]]:
    """(kind, rendering a, text a, rendering b, text b)."""
    pairs = []
    for i in range(n):
        pairs += [("same_text_piper_seeds", "piper_s0", i, "piper_s1", i),
                  ("same_text_piper_seeds", "piper_s0", i, "piper_s2", i),
                  ("same_text_piper_seeds", "piper_s1", i, "piper_s2", i),
                  ("same_text_piper_speed", "piper_s0", i, "piper_s3_speed1.1", i),
                  ("same_text_espeak_variants", "espeak", i, "espeak_f3", i),
                  ("same_text_espeak_variants", "espeak", i, "espeak_m3", i),
                  ("same_text_espeak_variants", "espeak_f3", i, "espeak_m3", i),
                  ("same_text_espeak_accent", "espeak", i, "espeak_gb", i),
                  ("same_text_espeak_speed", "espeak", i, "espeak_speed1.2", i),
                  ("same_text_two_voices", "piper_s0", i, "espeak", i),
                  ("same_text_two_voices", "piper_s1", i, "espeak_f3", i)]
        j = int((i + rng.integers(1, n)) % n)
        pairs += [("different_text_piper", "piper_s0", i, "piper_s0", j),
                  ("different_text_piper", "piper_s1", i, "piper_s2", j),
                  ("different_text_espeak", "espeak", i, "espeak", j)]
    return pairs


def operating_point(copies: np.ndarray, non: np.ndarray, max_fpr: float = 0.01) -> float:
    """The largest threshold (distance <= t is a copy) with at most max_fpr of non-copies below it."""
    s = np.sort(non)
    allowed = int(np.floor(max_fpr * len(s)))
    return float(np.nextafter(s[allowed], -np.inf)) if allowed < len(s) else float(s[-1])


def cost(clips: dict[str, list[tuple[np.ndarray, int]]], rng: np.random.Generator, repeats: int = 5) -> dict:
    """CPU milliseconds: fingerprint of a 30 s clip, and comparisons of 30 s clips (copy, non-copy)."""

    def long(name: str) -> tuple[np.ndarray, int]:
        sr = clips[name][0][1]
        x = np.concatenate([c for c, _ in clips[name]])
        while len(x) < 30 * sr:
            x = np.concatenate([x, x])
        return x[:30 * sr], sr

    (a, sr), (b, _) = long("piper_s0"), long("piper_s1")
    x16 = dsp.to_16k(Audio(a, sr))
    fpm.fingerprint(x16)
    t = time.process_time()
    for _ in range(repeats):
        fa = fpm.fingerprint(x16)
    fp_ms = (time.process_time() - t) / repeats * 1000
    fb = fp_of(b, sr)
    fc = fp_of(*apply("tempo", {"factor": 1.03}, a, sr, rng))
    out = {"fingerprint_30s_ms": fp_ms}
    for name, other in (("pair_30s_copy_ms", fc), ("pair_30s_non_copy_ms", fb)):
        t = time.process_time()
        for _ in range(repeats):
            fpm.distance(fa, other)
        out[name] = (time.process_time() - t) / repeats * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24, help=f"texts (at most {len(TEXTS)}); 22 copies, 15 non-copies each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write every pair and the summary as JSON")
    args = ap.parse_args(argv)
    if not 2 <= args.n <= len(TEXTS):
        ap.error(f"--n must be within 2-{len(TEXTS)}")
    rng = np.random.default_rng(args.seed)
    texts = TEXTS[:args.n]
    t0 = time.perf_counter()
    clips = synthesize(texts, args.seed)
    print(f"synthesised {sum(len(v) for v in clips.values())} clips in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    fps = {k: [fp_of(x, sr) for x, sr in v] for k, v in clips.items()}

    rows: list[dict] = []
    pair_cpu = []

    def compare(fa, fb) -> float:
        t = time.process_time()
        d = fpm.distance(fa, fb)
        pair_cpu.append(time.process_time() - t)
        return d

    for src in ("piper_s0", "espeak"):
        for i in range(args.n):
            x, sr = clips[src][i]
            for family in FAMILIES:
                steps = draw_combo(rng) if family == "combo" else [(family, draw(family, rng))]
                y, ysr = x, sr
                for f, p in steps:
                    y, ysr = apply(f, p, y, ysr, rng)
                d = compare(fps[src][i], fp_of(y, ysr))
                rows.append({"copy": True, "kind": family, "source": src, "text": i,
                             "edits": [{"family": f, **p} for f, p in steps], "distance": d})
    for kind, ra, i, rb, j in non_copy_pairs(args.n, rng):
        rows.append({"copy": False, "kind": kind, "a": ra, "b": rb, "text_a": i, "text_b": j,
                     "distance": compare(fps[ra][i], fps[rb][j])})
    for i in range(args.n):  # a copier's edit applied to an independent rendering is still no copy
        factor = 1.0 + _signed(rng, 0.01, 0.05)
        y, ysr = apply("tempo", {"factor": factor}, *clips["piper_s1"][i], rng)
        rows.append({"copy": False, "kind": "edited_independent_rendering", "a": "piper_s0",
                     "b": f"piper_s1 tempo {factor:.3f}", "text_a": i, "text_b": i,
                     "distance": compare(fps["piper_s0"][i], fp_of(y, ysr))})

    cop = np.array([r["distance"] for r in rows if r["copy"]])
    non = np.array([r["distance"] for r in rows if not r["copy"]])
    thr1 = operating_point(cop, non)
    default = fpm.DEFAULT_THRESHOLD
    print(f"\n{len(cop)} copy pairs, {len(non)} non-copy pairs, {len(texts)} texts, seed {args.seed}")
    print("\nROC (distance <= t is flagged a copy)")
    print(f"{'t':>6} {'TPR':>7} {'FPR':>7}")
    roc = []
    for t in sorted({*np.round(np.arange(0.20, 0.401, 0.02), 2), thr1, default}):
        tpr, fpr = float(np.mean(cop <= t)), float(np.mean(non <= t))
        roc.append({"threshold": float(t), "tpr": tpr, "fpr": fpr})
        print(f"{t:6.4f} {tpr:7.1%} {fpr:7.1%}")

    by_family = defaultdict(list)
    for r in rows:
        if r["copy"]:
            by_family[r["kind"]].append(r["distance"])
    print(f"\noperating point at <= 1 % FPR: t = {thr1:.4f} (FPR {np.mean(non <= thr1):.1%}); "
          f"DEFAULT_THRESHOLD = {default:.3f} (FPR {np.mean(non <= default):.1%})")
    print(f"{'copy family':<16} {'pairs':>5} {'TPR@1%FPR':>10} {'TPR@default':>12} {'median':>7} {'max':>7}")
    families = {}
    for f in FAMILIES:
        d = np.array(by_family[f])
        families[f] = {"pairs": len(d), "tpr_at_1pct_fpr": float(np.mean(d <= thr1)),
                       "tpr_at_default": float(np.mean(d <= default)), "median": float(np.median(d)),
                       "max": float(d.max())}
        print(f"{f:<16} {len(d):5d} {families[f]['tpr_at_1pct_fpr']:10.1%} {families[f]['tpr_at_default']:12.1%} "
              f"{np.median(d):7.3f} {d.max():7.3f}")
    kinds = defaultdict(list)
    for r in rows:
        if not r["copy"]:
            kinds[r["kind"]].append(r["distance"])
    print(f"\n{'non-copy kind':<30} {'pairs':>5} {'FPR@default':>11} {'min':>7} {'median':>7}")
    non_kinds = {}
    for k, v in kinds.items():
        d = np.array(v)
        non_kinds[k] = {"pairs": len(d), "fpr_at_default": float(np.mean(d <= default)), "min": float(d.min()),
                        "median": float(np.median(d))}
        print(f"{k:<30} {len(d):5d} {np.mean(d <= default):11.1%} {d.min():7.3f} {np.median(d):7.3f}")

    costs = cost(clips, rng)
    costs["pair_eval_mean_ms"] = float(np.mean(pair_cpu) * 1000)
    costs["pair_eval_max_ms"] = float(np.max(pair_cpu) * 1000)
    print("\ncost (CPU ms): " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out:
        summary = {"n_texts": args.n, "seed": args.seed, "copy_pairs": len(cop), "non_copy_pairs": len(non),
                   "threshold_at_1pct_fpr": thr1, "default_threshold": default,
                   "tpr_at_1pct_fpr": float(np.mean(cop <= thr1)), "tpr_at_default": float(np.mean(cop <= default)),
                   "fpr_at_default": float(np.mean(non <= default)), "families": families,
                   "non_copy_kinds": non_kinds, "roc": roc, "cost_ms": costs,
                   "fingerprint_version": fpm.FINGERPRINT_VERSION}
        args.out.write_text(json.dumps({"summary": summary, "pairs": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
