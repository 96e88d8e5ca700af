#!/usr/bin/env python3
"""Time the transformers speech engines (mms, speecht5, bark) through their own code, random weights.

Builds FULL-SIZE random-weight models with `audiosubnet.bench.random_models` (the published default
architectures: `VitsConfig()` = facebook/mms-tts-eng, `SpeechT5Config()` + `SpeechT5HifiGanConfig()`,
Bark small/large), saves them with `save_pretrained` (+ tokenizer) to a temp folder, loads each through
the engine's real `setup()` (via a ModelCache), and measures x-real-time at each batch size and dtype
(warm-up, CUDA synchronize, median of --reps).

Workloads match ../shared/tools/gpu_anchor.py so the numbers compare with the H100 anchors:
  mms       469 characters = 939 VITS tokens, durations forced to 2 frames/token -> 30 s per item
  speecht5  118 characters = 120 tokens, stop head off (threshold 2), min = max length ratio 8
            -> 480 decoder steps = 960 frames = 15.4 s per item
  bark      one short sentence, semantic tokens capped (--bark-tokens), batch 1 only (it runs
            requests one by one)

    python scripts/gpu_engines.py --device cuda                     # mms + speecht5, fp32 + fp16, 1..64
    python scripts/gpu_engines.py --device cuda --engines bark --bark-size small
    python scripts/gpu_engines.py --tiny                            # CPU, tiny configs, seconds

Runs from a checkout without installing the package (it puts the repo on sys.path); needs torch,
transformers, numpy, huggingface_hub and, for speecht5, sentencepiece. Prints a table; writes
gpu_engines.json to $OUT (or --out) when set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# H100 anchors (../shared/design/PERFORMANCE.md): (engine, batch, dtype) -> x real time
ANCHORS = {
    ("mms", 1, "float32"): 690.0, ("mms", 16, "float16"): 2163.0, ("mms", 64, "float16"): 2358.0,
    ("speecht5", 1, "float32"): 4.0, ("speecht5", 16, "float16"): 71.0,
}
TARGET = 0.6  # issue 7: >= 60% of each anchor through the engine's own code


def letters(n: int, seed: int = 0) -> str:
    """n characters of lowercase words (every tokenizer here maps each to one token)."""
    import random

    rng = random.Random(seed)
    out = []
    while len(" ".join(out)) < n:
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))))
    return " ".join(out)[:n].rstrip().ljust(n, "a")


class FixedDurations:
    """A deterministic VITS duration predictor that gives every token `frames` frames (as the anchor)."""

    def __new__(cls, frames: int):
        import torch

        class _Fixed(torch.nn.Module):
            def forward(self, inputs, padding_mask, global_conditioning=None):
                return torch.log(torch.full_like(padding_mask, float(frames)))

        return _Fixed()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn, device: str, reps: int, warmup: int = 1) -> tuple[float, object]:
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def build(engine: str, root: Path, tiny: bool, bark_size: str, bark_tokens: int) -> Path:
    from audiosubnet.bench import random_models as rm

    t0 = time.perf_counter()
    if engine == "bark":
        path = rm.build_bark(root / f"bark-{bark_size}", "tiny" if tiny else bark_size,
                             max_semantic_tokens=bark_tokens)
    else:
        path = rm.build(engine, root / engine, "tiny" if tiny else "full")
    print(f"# built {engine} ({'tiny' if tiny else 'full'}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def workload(engine_name: str, engine, tiny: bool):
    """Texts and engine settings that make every item the same, anchor-sized work."""
    if engine_name == "mms":
        engine._model.config.use_stochastic_duration_prediction = False
        engine._model.duration_predictor = FixedDurations(2)
        return letters(60 if tiny else 469)
    if engine_name == "speecht5":
        engine.threshold, engine.minlenratio, engine.maxlenratio = 2.0, 8.0, 8.0
        n_chars = 28 if tiny else 118
        text = letters(n_chars)
        tokens = len(engine._token_ids(text))
        text = letters(n_chars + (30 if tiny else 120) - tokens)  # land on exactly 30 / 120 tokens
        return text
    return "Hello, this is a test of the speech engine on random weights."


def run_engine(name: str, folder: Path, args, rows: list[dict]) -> None:
    import torch

    from audiosubnet.engines import registry
    from audiosubnet.engines.bark import BarkEngine
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.cache import ModelCache
    from audiosubnet.engines.mms import MmsEngine
    from audiosubnet.engines.speecht5 import SpeechT5Engine

    for cls in (MmsEngine, SpeechT5Engine, BarkEngine):
        registry.register(cls)
    dev = args.device
    dtypes = args.dtypes if dev.startswith("cuda") else ["float32"]
    batches = [1] if name == "bark" else args.batches
    for dtype in dtypes:
        cache = ModelCache(device=dev, dtype=dtype)
        t0 = time.perf_counter()
        try:
            lease = cache.engine(f"{name}:{folder}")
            engine = lease.__enter__()
        except Exception as e:  # report and go on with the next engine/dtype
            print(f"FAIL load {name} {dtype}: {type(e).__name__}: {e}", flush=True)
            rows.append(dict(engine=name, dtype=dtype, error=f"load: {e}"[:300]))
            continue
        load_s = time.perf_counter() - t0
        text = workload(name, engine, args.tiny)
        sr = engine.capabilities.sample_rate
        for batch in batches:
            engine.forward_batch = batch  # the whole batch in one forward pass
            reqs = [SynthesisRequest(text, seed=i) for i in range(batch)]
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            try:
                secs, audios = timed(lambda reqs=reqs, eng=engine: eng.synthesize(reqs), dev,
                                     reps=1 if name == "bark" else args.reps)
            except Exception as e:
                print(f"FAIL {name} batch {batch} {dtype}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                rows.append(dict(engine=name, dtype=dtype, batch=batch, error=str(e)[:300]))
                if dev.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            audio_s = sum(len(a.samples) for a in audios) / sr
            anchor = ANCHORS.get((name, batch, dtype)) if dev.startswith("cuda") and not args.tiny else None
            xrt = audio_s / secs
            row = dict(engine=name, size="tiny" if args.tiny else ("full" if name != "bark" else args.bark_size),
                       device=dev, dtype=dtype, batch=batch, seconds=round(secs, 4),
                       audio_s=round(audio_s, 2), rtf=round(secs / audio_s, 6), x_realtime=round(xrt, 1),
                       anchor_x=anchor, pct_of_anchor=round(100 * xrt / anchor, 1) if anchor else None,
                       meets_target=(xrt >= TARGET * anchor) if anchor else None, load_s=round(load_s, 2),
                       weights_mb=round(engine.memory_bytes() / 2**20, 1),
                       peak_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.startswith("cuda") else None,
                       per_item_s=round(audio_s / batch, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
        lease.__exit__(None, None, None)
        cache.clear()
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()


def table(rows: list[dict]) -> str:
    head = (f"{'engine':9} {'dtype':8} {'batch':>5} {'seconds':>8} {'audio s':>8} {'x real':>9} {'anchor':>7} "
            f"{'% anch':>7} {'peak MiB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['engine']:9} {r.get('dtype', ''):8} {r.get('batch', ''):>5} ERROR {r['error'][:60]}")
            continue
        anchor = f"{r['anchor_x']:.0f}" if r["anchor_x"] else "-"
        pct = f"{r['pct_of_anchor']:.0f}%" if r["pct_of_anchor"] else "-"
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] else "-"
        lines.append(f"{r['engine']:9} {r['dtype']:8} {r['batch']:>5} {r['seconds']:>8.3f} {r['audio_s']:>8.1f} "
                     f"{r['x_realtime']:>9.1f} {anchor:>7} {pct:>7} {peak:>9}")
    return "\n".join(lines)


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
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_engines.json (default $OUT)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    if args.device is None:
        args.device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    args.batches = [int(b) for b in (args.batches or ("1,2,4" if args.tiny else "1,8,16,32,64")).split(",")]
    args.dtypes = [d.strip() for d in args.dtypes.split(",")]
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("ASN_TORCH_THREADS", 0)) or max(1, os.cpu_count() or 1))
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    meta = dict(torch=torch.__version__, transformers=transformers.__version__, device=args.device, gpu=gpu,
                python=platform.python_version(), tiny=args.tiny, reps=args.reps)
    print("#", json.dumps(meta), flush=True)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    rows: list[dict] = []
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="asn-gpu-engines-") as tmp:
        for name in engines:
            if name == "speecht5":
                try:
                    import sentencepiece  # noqa: F401
                except ImportError:
                    print("SKIP speecht5: needs the sentencepiece wheel", flush=True)
                    rows.append(dict(engine=name, error="sentencepiece not installed"))
                    continue
            try:
                folder = build(name, Path(tmp), args.tiny, args.bark_size, args.bark_tokens)
            except Exception as e:
                print(f"FAIL build {name}: {type(e).__name__}: {e}", flush=True)
                rows.append(dict(engine=name, error=f"build: {e}"[:300]))
                continue
            run_engine(name, folder, args, rows)
    print()
    print(table(rows))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_engines.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
        print(f"\nwrote {out / 'gpu_engines.json'}")
    missed = [r for r in rows if r.get("meets_target") is False]
    if missed:
        print(f"\n{len(missed)} anchor point(s) below {TARGET:.0%}: "
              + ", ".join(f"{r['engine']} b{r['batch']} {r['dtype']}" for r in missed))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
