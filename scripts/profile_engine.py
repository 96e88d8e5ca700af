"""Where does an engine's time go? Times the stages of a transformers engine's forward pass (its model's
top-level modules and the helper functions its module calls, each synchronized so it is timed alone)
through the engine's own `synthesize`.

    python scripts/profile_engine.py --engine mms --random full --device cuda --dtype bfloat16 \
        --batch 1 --chars 640 [--batch 55 --chars 90] [--torch-profile]

`--random full|tiny` builds a random-weight model with audiosubnet.bench.random_models (real
architecture, including the stochastic duration predictor for MMS). Prints seconds per module per call.
The timers synchronize inside the pass, so CUDA graphs are off here (ASN_CUDA_GRAPHS=0) unless set otherwise.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ASN_CUDA_GRAPHS", "0")  # a synchronizing timer cannot run inside a graph capture

TEXT = ("The quick brown fox jumps over the lazy dog while the patient farmer counts his sheep, "
        "and the evening light fades slowly over the quiet hills beyond the old stone bridge. ")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="mms")
    ap.add_argument("--random", default="full")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--chars", type=int, action="append")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--torch-profile", action="store_true")
    ap.add_argument("--vary", action="store_true", help="a new text (so new shapes) on every call, as a miner sees")
    args = ap.parse_args()
    import torch

    from audiosubnet.bench import random_models
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.registry import EngineCache

    folder = Path(tempfile.mkdtemp()) / args.engine
    getattr(random_models, f"build_{args.engine}")(folder, size=args.random)
    cache = EngineCache(None, args.device, args.dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    with cache.engine(f"{args.engine}:{folder}") as engine:
        model = engine._model
        spent: dict[str, float] = collections.defaultdict(float)

        def timed(owner, attr: str, name: str) -> None:
            fn = getattr(owner, attr)

            def wrapper(*a, **k):
                sync()
                t = time.perf_counter()
                out = fn(*a, **k)
                sync()
                spent[name] += time.perf_counter() - t
                return out

            setattr(owner, attr, wrapper)

        # the stages of the engine's own forward pass (module forwards and the helpers it calls)
        import importlib

        mod = importlib.import_module(type(engine).__module__)
        for name, child in model.named_children():
            if child is not None and any(True for _ in child.parameters()):
                timed(child, "forward", name)
        for helper in ("_sdp_reverse", "hifigan_forward"):
            if hasattr(mod, helper):
                timed(mod, helper, helper)
        for batch, chars in zip(args.batch or [1], args.chars or [640], strict=True):
            text = (TEXT * (chars // len(TEXT) + 1))[:chars]
            reqs = [SynthesisRequest(text, seed=i) for i in range(batch)]
            engine.synthesize(reqs)  # warm up
            sync()
            spent.clear()
            t0 = time.perf_counter()
            for rep in range(args.reps):
                if args.vary:  # another length and other seeds: new shapes, as a miner sees them
                    cut = chars - 7 * (rep + 1)
                    reqs = [SynthesisRequest(text[:cut], seed=1000 * rep + i) for i in range(batch)]
                out = engine.synthesize(reqs)
            sync()
            total = (time.perf_counter() - t0) / args.reps
            audio = sum(a.duration for a in out)
            print(f"\nbatch {batch} x {chars} chars: {total * 1000:.1f} ms per call, {audio:.1f} s of audio, "
                  f"{audio / total:.0f}x real time ({args.device}/{args.dtype})")
            for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
                print(f"  {name:24s} {s / args.reps * 1000:8.1f} ms")
            print(f"  {'(outside modules)':24s} {(total - sum(spent.values()) / args.reps) * 1000:8.1f} ms")
            if args.torch_profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    engine.synthesize(reqs)
                    sync()
                print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
