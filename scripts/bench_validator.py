"""Benchmark one validator round over many fast fake miners on loopback (real sockets, real client,
real scoring pipeline) and show that a round takes about the slowest allowed timeout plus scoring
time, not the sum of the miners' times.

    python scripts/bench_validator.py [--miners 64] [--hang 4] [--timeout 4] [--rounds 3]
                                      [--scoring offline|instant|gpu] [--device cpu|cuda] [--random-weights]

Each fake miner is a tiny asyncio HTTP server answering /v1/tts after a random delay (0-1 s) with a
distinct espeak-ng voice reading the prompt; `--hang N` of them never answer. `--scoring instant`
replaces the model scorers by a constant (network and sanity/fingerprint checks only); `gpu` uses the
GPU stack (`--random-weights` builds full-size random-weight scorers, for timing on a box without the
weights). Prints a table and JSON (results/bench_validator.json when ASN_BENCH_OUT is set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosubnet import audio as audiolib  # noqa: E402
from audiosubnet.chain.bittensor import create_wallet  # noqa: E402
from audiosubnet.chain.sim import SimChain  # noqa: E402
from audiosubnet.config import ScoreSettings  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest  # noqa: E402
from audiosubnet.engines.registry import build_cache  # noqa: E402
from audiosubnet.protocol import AudioMeta  # noqa: E402
from audiosubnet.scoring.base import Scorer  # noqa: E402
from audiosubnet.scoring.pipeline import Scoring  # noqa: E402
from audiosubnet.validator.client import MinerClient  # noqa: E402
from audiosubnet.validator.loop import LoopConfig, Validator  # noqa: E402
from audiosubnet.validator.prompts import PromptSource  # noqa: E402
from audiosubnet.validator.tasks import ESPEAK_BASES, ESPEAK_VARIANTS  # noqa: E402

PROMPT = "The old lighthouse keeper counted forty two ships before the storm finally arrived."
NETUID = 16


class InstantScorer(Scorer):
    name = "instant"
    metrics = ("wer", "utmos")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"wer": 0.0, "utmos": 4.0} for _ in items]


async def serve_miner(port: int, wav: bytes, meta: dict, hang: bool, rng: random.Random) -> asyncio.AbstractServer:
    head = ("HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in meta.items()) + f"Content-Length: {len(wav)}\r\n\r\n").encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if hang:
                await asyncio.sleep(3600)
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            writer.write(head + wav)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # a hanging miner is cancelled when the benchmark ends
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def make_clips(n: int, cache) -> list[audiolib.Audio]:
    voices = [b + v for v in ESPEAK_VARIANTS for b in ESPEAK_BASES][:n]
    with cache.engine("espeak:en-us") as e:
        return [e.synthesize([SynthesisRequest(PROMPT, voice=v, speed=0.9 + 0.2 * (i % 5) / 4)])[0]
                for i, v in enumerate(voices)]


def scoring_for(args, cache) -> Scoring:
    if args.scoring == "instant":
        return Scoring(scorers=[InstantScorer], cache=cache)
    scoring = Scoring(ScoreSettings(preset=args.scoring), cache=cache)
    if args.random_weights:  # full-size architectures with random weights, loaded under the plan's keys
        from audiosubnet.bench.random_scorers import install_random_scorers

        install_random_scorers(scoring, tiny=args.tiny)
    return scoring


async def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="asn-bench-val-"))
    cache = build_cache(args.device, args.dtype, None)
    chain = SimChain(tmp / "sim.db", create=True)
    chain.create_subnet(NETUID, weights_rate_limit=0, max_uids=args.miners + 8)
    val = create_wallet("val", "default", tmp / "w")
    chain.register(NETUID, val.hotkey, stake=1000, validator_permit=True)
    clips = make_clips(args.miners, cache)
    rng = random.Random(0)
    servers = []
    base_port = args.base_port
    for i in range(args.miners):
        w = create_wallet(f"m{i}", "default", tmp / "w")
        chain.register(NETUID, w.hotkey)
        SimChain(tmp / "sim.db", hotkey=w.hotkey).publish_endpoint(NETUID, "127.0.0.1", base_port + i)
        a = clips[i % len(clips)]
        meta = AudioMeta("fake", a.sample_rate, a.duration, 1.0).headers()
        servers.append(await serve_miner(base_port + i, audiolib.encode(a, "wav"), meta, i < args.hang, rng))
    scoring = scoring_for(args, cache)
    await asyncio.to_thread(scoring.warmup, False)
    client = MinerClient(val, timeout_s=args.timeout, max_connections=args.miners * 2)
    v = Validator(chain=SimChain(tmp / "sim.db", hotkey=val.hotkey), own_hotkey=val.hotkey, client=client,
                  scoring=scoring, prompts=PromptSource([PROMPT], generated_ratio=0.0, seed=1),
                  config=LoopConfig(netuid=NETUID, timeout_s=args.timeout, round_interval_s=0, set_weights=False),
                  state_dir=tmp / "state")
    rounds = []
    for _ in range(args.rounds):
        r = await v.run_round()
        answered = sum(o.status not in ("timeout", "connect") for o in r.outcomes)
        rounds.append({"query_s": r.query_s, "score_s": r.score_s, "total_s": r.total_s, "answered": answered,
                       "scored_ok": sum(o.status == "ok" for o in r.outcomes)})
    await client.aclose()
    for s in servers:
        s.close()
    med = {k: statistics.median(x[k] for x in rounds) for k in ("query_s", "score_s", "total_s")}
    scored = rounds[-1]["answered"]
    return {"miners": args.miners, "hanging": args.hang, "timeout_s": args.timeout, "scoring": args.scoring,
            "device": cache.device, "dtype": cache.dtype, "rounds": rounds, **{f"median_{k}": round(v, 3)
                                                                                for k, v in med.items()},
            "clips_scored_per_round": scored, "scoring_clips_per_s": round(scored / med["score_s"], 2)
            if med["score_s"] else None,
            "sum_of_miner_delays_s": round(args.hang * args.timeout + 0.5 * (args.miners - args.hang), 1),
            "clip_seconds": round(statistics.mean(c.duration for c in clips), 2), "cpu_count": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--miners", type=int, default=64)
    ap.add_argument("--hang", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scoring", choices=["offline", "instant", "gpu"], default="offline")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="tiny random scorers (smoke test of the GPU path on CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--base-port", type=int, default=19100)
    args = ap.parse_args()
    res = asyncio.run(run(args))
    print("| miners | hanging | timeout s | scoring | round s (median) | query s | scoring s | clips/s |\n"
          "|---|---|---|---|---|---|---|---|\n"
          f"| {res['miners']} | {res['hanging']} | {res['timeout_s']:g} | {res['scoring']} on {res['device']} | "
          f"{res['median_total_s']:.2f} | {res['median_query_s']:.2f} | {res['median_score_s']:.2f} | "
          f"{res['scoring_clips_per_s']} |")
    print(json.dumps(res, indent=1))
    if os.environ.get("ASN_BENCH_OUT"):
        Path(os.environ["ASN_BENCH_OUT"], "bench_validator.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
