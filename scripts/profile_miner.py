"""Where does a miner request's time go? The same request timed at three depths, in one process:

  engine   - engine.synthesize() alone (leased from the cache)
  service  - TtsService.synthesize(): queue, dynamic batch, engine thread, WAV encoding
  http     - the FastAPI app through httpx's ASGI transport: signed (btauth/1), verified, policy, service

    python scripts/profile_miner.py --random-mms full --device cuda [--chars 640] [--batch 1,32]

Each depth runs `--reps` times per batch size with texts of varying length (new shapes each time, as
a miner sees them). Prints median milliseconds per request and per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXT = ("the quick brown fox jumps over a lazy dog while seven patient farmers count their sheep near "
        "an old stone bridge under the evening light")
WORDS = TEXT.split(" ")


def texts(n: int, chars: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = int(chars * rng.uniform(0.8, 1.2))
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(WORDS))
        out.append(" ".join(words).capitalize() + ".")
    return out


async def main_async(args) -> None:
    import httpx

    from audiosubnet.chain.bittensor import create_wallet, sign_request
    from audiosubnet.chain.sim import SimChain
    from audiosubnet.config import load_settings
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.miner.server import build_miner

    tmp = Path(tempfile.mkdtemp(prefix="asn-prof-"))
    model = args.model
    if args.random_mms:
        from audiosubnet.bench.random_models import build_mms

        build_mms(tmp / "mms", size=args.random_mms)
        model = f"mms:{tmp / 'mms'}"
    miner_w = create_wallet("miner", "default", tmp / "w")
    val = create_wallet("val", "default", tmp / "w")
    chain = SimChain(tmp / "sim.db", create=True)
    chain.create_subnet(16)
    chain.register(16, miner_w.hotkey)
    chain.register(16, val.hotkey, stake=1000, validator_permit=True)
    settings = load_settings(**{"subnet.network": "sim", "subnet.sim_path": tmp / "sim.db", "home": tmp / "home",
                                "model": model, "device": args.device, "dtype": args.dtype,
                                "mine.max_batch": max(args.batch), "mine.rate_limit_per_min": 0})
    cache = EngineCache(None, args.device if args.device != "auto" else "cpu",
                       "float32" if args.device == "cpu" else args.dtype)
    miner = build_miner(settings, wallet=miner_w, chain=chain, cache=cache)
    svc = miner.context.service
    app = miner.app
    def sync() -> None:
        if args.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://miner") as client:
            for batch in args.batch:
                rows = {}
                # engine
                ts = []
                for rep in range(args.reps):
                    reqs = [SynthesisRequest(t) for t in texts(batch, args.chars, rep)]
                    with cache.engine(svc.resolve_model(None).model_id) as e:
                        t0 = time.perf_counter()
                        e.synthesize(reqs)
                        sync()
                        ts.append(time.perf_counter() - t0)
                rows["engine"] = ts
                # service
                ts = []
                for rep in range(args.reps):
                    batch_texts = texts(batch, args.chars, 100 + rep)
                    t0 = time.perf_counter()
                    await asyncio.gather(*(svc.synthesize(t) for t in batch_texts))
                    ts.append(time.perf_counter() - t0)
                rows["service"] = ts
                # http
                ts = []
                for rep in range(args.reps):
                    batch_texts = texts(batch, args.chars, 200 + rep)

                    async def one(t: str):
                        import json

                        body = json.dumps({"text": t}).encode()
                        headers = {"content-type": "application/json",
                                   **sign_request(val, "POST", "/v1/tts", body, miner_w.hotkey)}
                        r = await client.post("/v1/tts", content=body, headers=headers)
                        assert r.status_code == 200, r.text
                    t0 = time.perf_counter()
                    await asyncio.gather(*(one(t) for t in batch_texts))
                    ts.append(time.perf_counter() - t0)
                rows["http"] = ts
                print(f"batch {batch} x ~{args.chars} chars ({args.device}/{args.dtype}):")
                for k, v in rows.items():
                    med = statistics.median(v[1:] if len(v) > 2 else v)
                    print(f"  {k:8s} {med * 1000:8.1f} ms per batch, {med * 1000 / batch:7.2f} ms per request")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="auto")
    ap.add_argument("--random-mms", choices=("tiny", "full"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--chars", type=int, default=640)
    ap.add_argument("--batch", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    ap.add_argument("--reps", type=int, default=5)
    asyncio.run(main_async(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
