"""MusicGen speed on a GPU: transformers' `generate` vs the static-cache CUDA-graph decode loop, side by side.

Random weights in a published architecture (default: musicgen-medium, 1.5B parameters), classifier-free guidance
on (scale 3, so every step runs 2 x batch rows), top-k 250 sampling, the same prompts and lengths for both paths.
Per batch size: seconds per call (median of --reps, after a warm-up call), decoder steps per second, tokens per
second (steps x batch), and x real time (seconds of audio made per wall second), EnCodec decoding included.
The fast path's one-time graph capture is reported apart. `--check` first compares the two paths greedily
(top-k 1): the codes must be identical.

    python scripts/bench_music.py --device cuda --dtype bfloat16 --batch 1,32 --seconds 10
    python scripts/bench_music.py --device cpu --size tiny --batch 1,2 --seconds 1 --reps 1 --check   (smoke test)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--size", default="medium", choices=("tiny", "small", "medium", "large"))
    p.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of music per item")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--text-len", type=int, default=16, help="prompt tokens (padded)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--skip-plain", action="store_true", help="time only the fast path")
    p.add_argument("--no-graph", action="store_true", help="fast path without the CUDA graph (eager steps)")
    p.add_argument("--check", action="store_true", help="greedy equality check of the two paths first")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also profile this many eager decoder steps per batch size (kernel table by GPU time)")
    p.add_argument("--window", default="64",
                   help="self-attention window(s) of the fast path, comma-separated: each timed in the same run")
    p.add_argument("--attention", default="auto",
                   help="attention of the fast path, comma-separated (auto, kernel, sdpa): each timed in the "
                        "same run; --window applies to sdpa")
    p.add_argument("--json", type=Path, help="also write the rows here")
    return p.parse_args()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> tuple[float, object]:
    out = fn()  # warm-up (and, for the fast path, nothing else: capture happens before)
    sync(device)
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def profile_steps(fast, ids, mask, n: int, device: str) -> None:
    """`n` eager decoder steps from the middle of a run under torch.profiler: the kernels by total GPU (or CPU)
    time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.inference_mode():
        fast.prepare(ids, mask)
        fast.pos.fill_(fast.steps // 2)
        attend = min(fast.T, (fast.steps // 2 + n + 3) // fast.window * fast.window + fast.window)
        for _ in range(3):
            fast.step(attend)
        sync(device)
        t0 = time.perf_counter()
        with profile(activities=acts) as prof:
            for _ in range(n):
                fast.step(attend)
            sync(device)
        wall = time.perf_counter() - t0
    key = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    print(f"# profile: {n} eager steps in {wall * 1000:.1f} ms ({wall * 1000 / n:.2f} ms a step, profiler on)")
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60), flush=True)


def main() -> int:
    a = parse()
    attentions = list(dict.fromkeys(x.strip() for x in a.attention.split(",") if x.strip()))  # in order, once each
    windows = [int(w) for w in a.window.split(",") if w.strip()]
    # fast-path rows per batch size: each attention, the SDPA one once per window
    variants = [(att, w) for att in attentions for w in (windows if att == "sdpa" else windows[:1])]
    import torch
    from transformers import MusicgenForConditionalGeneration

    from audiosubnet.bench.random_music import musicgen_config
    from audiosubnet.engines.musicgen_fast import FastMusicgen, steps_for

    if a.device == "cpu":
        a.dtype = "float32"  # CPU: fp32 only
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[a.dtype]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    cfg = musicgen_config(a.size)
    with torch.device(a.device):  # initialise the random weights where they will run (1.5B on a CPU is slow)
        model = MusicgenForConditionalGeneration(cfg)
    model = model.eval().to(device=a.device, dtype=dtype)
    model.audio_encoder.float()  # as the engine: EnCodec in fp32 (not every LSTM kernel takes bf16)
    build_s = time.perf_counter() - t0
    dec = model.decoder.config
    enc = model.config.audio_encoder
    frame_rate = float(enc.frame_rate)  # 50 Hz: 32 kHz / (8 x 5 x 4 x 4)
    steps = steps_for(a.seconds, frame_rate, dec.num_codebooks)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"# musicgen-{a.size} (random weights, {params:.0f}M parameters) on {a.device}/{a.dtype}: "
          f"{a.seconds:g} s per item = {steps} steps, guidance {a.guidance}, top-k {a.top_k}; built in {build_s:.1f} s",
          flush=True)
    if a.device.startswith("cuda"):
        print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    vocab = cfg.text_encoder.vocab_size
    gen = torch.Generator().manual_seed(0)

    def prompts(b: int):
        ids = torch.randint(3, vocab, (b, a.text_len), generator=gen).to(a.device)
        return ids, torch.ones_like(ids)

    if a.check:
        ids, mask = prompts(2)
        n = steps_for(min(a.seconds, 1.0), frame_rate, dec.num_codebooks)
        with torch.inference_mode():
            ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, guidance_scale=a.guidance)
        for attention in attentions:
            fast = FastMusicgen(model, 2, n, a.text_len, guidance_scale=a.guidance, top_k=1,
                                graph=False if a.no_graph else None, attention=attention)
            got = fast.audio(fast.decode(ids, mask))
            diff = float((ref[:, 0].float() - got.float()).abs().max())
            used = "decode-attention kernel" if fast.decode_attn is not None else "sdpa"
            print(f"# greedy check (batch 2, {n} steps, {used}): max |plain - fast| audio difference {diff:.3g}",
                  flush=True)

    def time_fast(row: dict, b: int, window: int, attention: str, ids, mask) -> None:
        try:
            fast = FastMusicgen(model, b, steps, a.text_len, guidance_scale=a.guidance, top_k=a.top_k,
                                graph=False if a.no_graph else None, window=window, attention=attention)
            row["attention"] = "kernel" if fast.decode_attn is not None else "sdpa"
            t0 = time.perf_counter()
            fast.decode(ids, mask)  # includes the capture on CUDA
            sync(a.device)
            row["fast_first_s"] = time.perf_counter() - t0

            def quick(ids=ids, mask=mask, fast=fast):
                return fast.audio(fast.decode(ids, mask))

            s, audio = timed(quick, a.device, a.reps)
            row["fast_s"] = s
            row["fast_finite"] = bool(torch.isfinite(audio).all())
            codes = fast.decode(ids, mask)
            row["fast_audio_s"], _ = timed(lambda codes=codes, fast=fast: fast.audio(codes), a.device, 1)
            if a.profile:
                profile_steps(fast, ids, mask, a.profile, a.device)
            del fast
        except torch.OutOfMemoryError as e:
            row["fast_error"] = f"out of memory: {str(e)[:80]}"

    rows = []
    for b in [int(x) for x in a.batch.split(",") if x.strip()]:
        ids, mask = prompts(b)
        row = {"batch": b, "seconds_audio": a.seconds, "steps": steps, "size": a.size, "dtype": a.dtype,
               "device": a.device}
        if not a.skip_plain:
            def plain(ids=ids, mask=mask):
                with torch.inference_mode():
                    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps,
                                          min_new_tokens=steps, do_sample=True, top_k=a.top_k,
                                          guidance_scale=a.guidance)

            try:
                s, _ = timed(plain, a.device, a.reps)
                row["plain_s"] = s
            except torch.OutOfMemoryError as e:
                row["plain_error"] = f"out of memory: {str(e)[:80]}"
            torch.cuda.empty_cache() if a.device.startswith("cuda") else None
        for j, (attention, window) in enumerate(variants):
            if j:  # the next variant: a row of its own, the fast path only
                row = {k: row[k] for k in ("batch", "seconds_audio", "steps", "size", "dtype", "device")}
            row["window"] = window
            time_fast(row, b, window, attention, ids, mask)
            if a.device.startswith("cuda"):
                row["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.empty_cache()
            for k in ("plain", "fast"):
                if f"{k}_s" in row:
                    row[f"{k}_steps_per_s"] = steps / row[f"{k}_s"]
                    row[f"{k}_tokens_per_s"] = b * steps / row[f"{k}_s"]
                    row[f"{k}_x_realtime"] = b * a.seconds / row[f"{k}_s"]
            if "plain_s" in row and "fast_s" in row:
                row["speedup"] = row["plain_s"] / row["fast_s"]
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    print("\n| batch | path | s per call | steps/s | tokens/s | x real time |\n|---|---|---|---|---|---|")
    for r in rows:
        for k in ("plain", "fast"):
            if f"{k}_s" in r:
                how = "decode-attention kernel" if r.get("attention") == "kernel" else f"window {r['window']}"
                path = k if k == "plain" else f"fast ({how})"
                print(f"| {r['batch']} | {path} | {r[f'{k}_s']:.2f} | {r[f'{k}_steps_per_s']:.1f} | "
                      f"{r[f'{k}_tokens_per_s']:.0f} | {r[f'{k}_x_realtime']:.1f} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
