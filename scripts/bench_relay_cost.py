"""What relay detection costs: a miner's work per answer, the sizes on the wire, a validator's check per round.

    python scripts/bench_relay_cost.py [--miners 64] [--entries 64] [--repeats 5]

- miner: sketch + fingerprint of one answer (`miner/seen_log.make_entry_parts`) for 3, 6 and 30 s of speech;
- wire: bytes of one seen-log entry (sketch) and of one fingerprint fetched by id;
- validator: `validator/relay.find_relays` over `--miners` miners whose logs hold `--entries` other callers'
  prompts each (nothing leaked: the common case), in process (no network), and with one relay among them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from audiosubnet import audio as audiolib
from audiosubnet import protocol
from audiosubnet.chain.base import Peer
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.registry import EngineCache
from audiosubnet.miner.seen_log import PromptLog, make_entry_parts
from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD
from audiosubnet.validator.prompts import PromptSource
from audiosubnet.validator.relay import find_relays, issued


class LocalLogs:
    def __init__(self, logs: dict[str, PromptLog]):
        self.logs = logs

    async def seen(self, endpoint, hotkey, request, *, timeout_s=3.0):
        resp = protocol.SeenResponse(hotkey=hotkey, entries=await self.logs[hotkey].seen(request, "5Me"))
        return resp, len(resp.model_dump_json())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", type=int, default=64)
    ap.add_argument("--entries", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cache = EngineCache(budget_bytes=None)
    prompts = PromptSource([], seed=0).issue(args.miners)
    with cache.engine("espeak:en-us") as e:
        clip = e.synthesize([SynthesisRequest(prompts[0].text)])[0]
    print(f"miner: sketch + fingerprint of one answer (espeak-ng clip, {clip.duration:.1f} s base)")
    for seconds in (3, 6, 30):
        reps = int(seconds * clip.sample_rate / len(clip.samples)) + 1
        import numpy as np

        a = audiolib.Audio(np.tile(clip.samples, reps)[: int(seconds * clip.sample_rate)], clip.sample_rate)
        wav = audiolib.encode(a, "wav")
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            sk, fp = make_entry_parts(prompts[0].text, wav)
            ts.append(time.perf_counter() - t)
        print(f"  {seconds:>2} s answer: {1000 * statistics.median(ts):.1f} ms; sketch {len(sk) * 4} B raw, "
              f"fingerprint on the wire {len(fp or '')} B")

    logs = {f"hk{u}": PromptLog() for u in range(args.miners)}
    others = PromptSource([], seed=99).issue(args.entries)  # other validators' prompts (one generator: alike)

    def say(text: str) -> bytes:
        with cache.engine("espeak:en-us") as e:
            return audiolib.encode(e.synthesize([SynthesisRequest(text)])[0], "wav")

    rendered = {p.text: say(p.text) for p in others}

    async def fill():
        for u in range(args.miners):
            for k, p in enumerate(others):
                await logs[f"hk{u}"].record(f"5Validator{k}", "tts", p.text, rendered[p.text])

    asyncio.run(fill())
    peers = [Peer(uid=u, hotkey=f"hk{u}", coldkey="ck", endpoint=f"10.0.0.1:{9000 + u}", validator_permit=False,
                  stake=0.0) for u in range(args.miners)]
    issued_ = {u: issued(u, p.text, p.unique) for u, p in enumerate(prompts)}
    answers = {u: say(p.text) for u, p in enumerate(prompts)}  # every miner renders its own prompt (one engine)
    for label in ("nothing leaked", "one relay"):
        if label == "one relay":  # miner 0 forwarded its prompt to miner 1 and returned miner 1's audio
            asyncio.run(logs["hk1"].record("5Relay", "tts", prompts[0].text, answers[0]))
        ts, stats = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            stats = asyncio.run(find_relays(LocalLogs(logs), "5Me", peers, issued_, answers, window_s=60,
                                            threshold=DEFAULT_THRESHOLD))
            ts.append(time.perf_counter() - t)
        print(f"validator, {args.miners} miners x {args.entries} logged prompts, {label}: "
              f"{1000 * statistics.median(ts):.0f} ms; {stats.bytes / args.miners / 1024:.1f} KiB per miner, "
              f"{stats.candidates} candidates, {len(stats.findings)} relays")


if __name__ == "__main__":
    main()
