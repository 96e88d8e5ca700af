#!/usr/bin/env python
"""Voice-cloning benchmarks: pairs per minute on the CPU (offline fallback), clone RTF on a GPU.

CPU (the offline `world` fallback through the real `asn clone watch` pipeline: files, journal,
batching, atomic writes; references are espeak-ng voice variants, texts ~12 words):
    python scripts/bench_clone.py --quick                 # 4 pairs, a smoke run
    python scripts/bench_clone.py --pairs 32              # the number for docs/benchmarks.md

GPU (clone real-time factor = generation seconds / seconds of speech produced; full-size published
architectures with random weights when the weights cannot be downloaded, the length forced so every
run produces --seconds of speech):
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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REF_TEXT = "Please call Stella and ask her to bring these things with her from the store."
TEXTS = [
    "The birch canoe slid on the smooth planks, and the boy was there when the sun rose.",
    "Glue the sheet to the dark blue background before the paint dries in the afternoon.",
    "It is easy to tell the depth of a well by dropping a small stone into the water.",
    "These days a chicken leg is a rare dish, and the juice of lemons makes fine punch.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m7", "en+f4", "en-us+klatt", "en-gb-scotland", "en-029"]
OLD_BARK_RTF = 82.15 / 30.0


# ---- CPU: pairs per minute with the offline fallback ----------------------------------------------
def bench_cpu(pairs: int, model: str, max_batch: int) -> dict:
    from audiosubnet import audio as audiolib
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.cache import ModelCache, set_cache
    from audiosubnet.jobs.clone_watch import CloneWatcher, WatchOptions

    cache = ModelCache(device="cpu", dtype="float32")
    set_cache(cache)
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


# ---- GPU: clone RTF ---------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _reference(seconds: float = 6.0, sr: int = 24000):
    from audiosubnet.audio import Audio

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    x = sum(np.sin(2 * np.pi * np.cumsum(f0) / sr * k) / k for k in range(1, 16)) + 0.01 * rng.standard_normal(len(t))
    return Audio((0.3 * x / np.abs(x).max()).astype(np.float32), sr)


def bench_pocket(device: str, seconds: float, weights: str, repeats: int, work: Path) -> list[dict]:
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.cache import ModelCache, set_cache
    from audiosubnet.engines.pocket import build_random_pocket

    if weights == "random":
        t0 = time.perf_counter()
        folder = build_random_pocket(work / "pocket-full", size="full")
        print(f"built a full-size random Pocket TTS in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        model_id = f"pocket:{folder}"
    else:
        model_id = "pocket:english"
    cache = ModelCache(device=device, dtype="float32")
    set_cache(cache)
    ref = _reference()
    rows = []
    with cache.engine(model_id) as e:
        tts = e._tts
        if weights == "random":
            tts.eos_threshold = 1e9  # random weights: never stop early, run to the length the text allows
        if weights == "random":
            # never-stopping random weights run to the package's length limit for the text; with the
            # stand-in's character tokenizer that is ~0.57 s per character (measured): size the text for it
            words = "the quick brown fox jumps over a lazy dog while seven birds sing near the old river bank " * 9
            text = words[: max(5, round((seconds - 0.7) / 0.566))].strip() + "."
        else:
            text = " ".join(TEXTS)  # real weights stop by themselves: ~4 sentences, ~25 s
        req = SynthesisRequest(text, reference=ref, seed=0)
        e.synthesize([req])  # warm-up (voice state, kernels)
        times, durs = [], []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            out = e.synthesize([req])[0]
            _sync(device)
            times.append(time.perf_counter() - t0)
            durs.append(out.duration)
        t0 = time.perf_counter()
        e._states.clear()
        e._state(ref)
        _sync(device)
        prompt_s = time.perf_counter() - t0
    med_t, med_d = statistics.median(times), statistics.median(durs)
    rows.append({"engine": "pocket", "weights": weights, "device": device, "dtype": "float32", "batch": 1,
                 "audio_s": round(med_d, 2), "gen_s": round(med_t, 3), "rtf": round(med_t / med_d, 4),
                 "x_realtime": round(med_d / med_t, 1), "voice_prompt_s": round(prompt_s, 3),
                 "vs_old_bark": round(OLD_BARK_RTF / (med_t / med_d), 1)})
    return rows


def bench_speecht5_clone(device: str, dtype: str, seconds: float, batches: list[int], repeats: int,
                         work: Path) -> list[dict]:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from audiosubnet.bench.random_models import build_speecht5
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.cache import ModelCache, set_cache

    folder = build_speecht5(work / "speecht5-full", size="full")
    torch.manual_seed(0)
    WavLMForXVector(WavLMConfig()).save_pretrained(folder / "xvector")  # wavlm-base-plus-sv's architecture
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder / "xvector")
    cache = ModelCache(device=device, dtype=dtype)
    set_cache(cache)
    ref = _reference(sr=16000)
    rows = []
    with cache.engine(f"speecht5-clone:{folder}") as e:
        inner = e.inner
        inner.threshold = 2.0  # random weights: the stop head never fires; length = maxlenratio
        text = " ".join(TEXTS[:3])  # ~250 characters: within SpeechT5's 450 text positions
        n_tok = len(inner._token_ids(text))
        steps = int(seconds * 16000 / 256 / 2)  # reduction factor 2, hop 256 at 16 kHz
        inner.maxlenratio = steps * 2 / n_tok + 1e-6
        for b in batches:
            reqs = [SynthesisRequest(text, reference=ref, seed=i) for i in range(b)]
            e.synthesize(reqs[:1])
            times, durs = [], []
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                outs = e.synthesize(reqs)
                _sync(device)
                times.append(time.perf_counter() - t0)
                durs.append(sum(o.duration for o in outs))
            med_t, med_d = statistics.median(times), statistics.median(durs)
            rows.append({"engine": "speecht5-clone", "weights": "random", "device": device, "dtype": e.dtype,
                         "batch": b, "audio_s": round(med_d, 1), "gen_s": round(med_t, 3),
                         "rtf": round(med_t / med_d, 4), "x_realtime": round(med_d / med_t, 1),
                         "vs_old_bark": round(OLD_BARK_RTF / (med_t / med_d), 1)})
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
        with tempfile.TemporaryDirectory() as tmp:
            for eng in engines:
                if eng == "pocket":
                    rows += bench_pocket(a.device, a.seconds, a.weights, repeats, Path(tmp))
                elif eng == "speecht5-clone":
                    rows += bench_speecht5_clone(a.device, a.dtype, a.seconds, a.batch, repeats, Path(tmp))
                else:
                    ap.error(f"unknown GPU engine {eng}")
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
