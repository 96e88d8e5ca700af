"""Dishonest miners for a simulated subnet, all in one process (each on its own port, with its own hotkey).

    python scripts/cheaters.py --sim SIM --wallets DIR --netuid 16 --relay-wallet relay \
        --miner silence:silence:PORT --miner r1:relay:PORT:HOST:PORT:HOTKEY:edits ...

Behaviours (`--miner NAME:BEHAVIOUR:PORT[:TARGET_HOST:TARGET_PORT:TARGET_HOTKEY[:EDITS]]`, NAME is the wallet):
- silence: digital silence of a plausible length;  noise: white noise;  fixed: the same clip of another sentence
  every time;  wrong: espeak-ng reading another sentence;  slow: the right speech, after the deadline;
  http500: an error status;  garbage: random bytes with audio headers;
- relay: forwards the prompt (text, seed) to the target miner, signed with the relay wallet's hotkey (a validator
  permit it also holds), applies EDITS to the audio and returns it as its own. EDITS is a '+'-separated list of
  resample24k, gain-2db, noise35db, mp3, opus, speed1.03 (any factor: played faster/slower, pitch with it),
  textedit (drops the prompt's punctuation before forwarding).
It speaks the wire protocol well enough to be scored; it does not check signatures (cheaters don't care).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import numpy as np
import soxr
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audiosubnet import audio as audiolib
from audiosubnet.chain.bittensor import load_wallet
from audiosubnet.chain.sim import SimChain
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.registry import EngineCache
from audiosubnet.protocol import AudioMeta, TtsRequest
from audiosubnet.validator.client import MinerClient

OTHER = ["Bananas are an excellent source of potassium and fibre for hungry hikers on long trails.",
         "The committee will publish its annual report on river pollution next spring.",
         "Please switch off your phones before the orchestra begins the second movement."]


def respond(a: audiolib.Audio, fmt: str = "wav") -> Response:
    headers = AudioMeta(model="cheat", sample_rate=a.sample_rate, duration_s=a.duration, elapsed_ms=1.0).headers()
    return Response(audiolib.encode(a, fmt), media_type=f"audio/{fmt}", headers=headers)


def edit(a: audiolib.Audio, edits: list[str], rng: np.random.Generator) -> audiolib.Audio:
    x, sr = a.samples.astype(np.float32), a.sample_rate
    for e in edits:
        if e == "resample24k":
            x, sr = soxr.resample(x, sr, 24000).astype(np.float32), 24000
        elif e.startswith("gain"):
            x = x * np.float32(10 ** (float(e[4:].removesuffix("db")) / 20))
        elif e.startswith("noise"):
            snr = float(e[5:].removesuffix("db"))
            rms = float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
            x = x + rng.normal(0, rms * 10 ** (-snr / 20), len(x)).astype(np.float32)
        elif e.startswith("speed"):  # played faster (>1) or slower: tempo and pitch together
            f = float(e[5:])
            x = soxr.resample(x, sr * f, sr).astype(np.float32)
        elif e in ("mp3", "opus"):
            y = audiolib.decode(audiolib.encode(audiolib.Audio(x, sr), "mp3" if e == "mp3" else "ogg"))
            x, sr = y.samples, y.sample_rate
    return audiolib.Audio(np.clip(x, -1, 1), sr)


def make_app(name: str, behaviour: str, args: list[str], cache: EngineCache, relay_wallet) -> Starlette:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    target = (f"{args[0]}:{args[1]}", args[2]) if behaviour == "relay" else None
    edits = args[3].split("+") if behaviour == "relay" and len(args) > 3 and args[3] else []
    client: list[MinerClient] = []

    def say(text: str, voice: str | None = None) -> audiolib.Audio:
        with cache.engine("espeak:en-us") as e:
            return e.synthesize([SynthesisRequest(text, voice=voice)])[0]

    fixed = say(OTHER[0])

    async def tts(request: Request) -> Response:
        req = TtsRequest.model_validate(json.loads(await request.body()))
        n = int(22050 * len(req.text) / 15)
        if behaviour == "silence":
            return respond(audiolib.Audio(np.zeros(n, np.float32), 22050))
        if behaviour == "noise":
            return respond(audiolib.Audio((rng.standard_normal(n) * 0.1).astype(np.float32), 22050))
        if behaviour == "fixed":
            return respond(fixed)
        if behaviour == "wrong":
            return respond(await asyncio.to_thread(say, OTHER[int(rng.integers(len(OTHER)))]))
        if behaviour == "slow":
            a = await asyncio.to_thread(say, req.text)
            await asyncio.sleep(120)
            return respond(a)
        if behaviour == "http500":
            return Response('{"code":"internal","message":"oops"}', status_code=500, media_type="application/json")
        if behaviour == "garbage":
            return Response(rng.bytes(40_000), media_type="audio/wav", headers=AudioMeta(
                model="cheat", sample_rate=22050, duration_s=2.0, elapsed_ms=1.0).headers())
        # relay
        if not client:
            client.append(MinerClient(relay_wallet, timeout_s=30))
        text = req.text.replace(",", "").replace(";", "") if "textedit" in edits else req.text
        got = await client[0].tts(target[0], target[1], TtsRequest(text=text, seed=req.seed))
        if not got.ok:
            return Response('{"code":"unavailable","message":"upstream"}', status_code=503,
                            media_type="application/json")
        out = await asyncio.to_thread(edit, audiolib.decode(got.audio), [e for e in edits if e != "textedit"], rng)
        return respond(out)

    async def health(request: Request) -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/tts", tts, methods=["POST"]), Route("/v1/clone", tts, methods=["POST"]),
                             Route("/health", health)])


async def serve(specs: list[str], sim: str, wallets: str, netuid: int, relay: str | None) -> None:
    cache = EngineCache(budget_bytes=None)
    relay_wallet = load_wallet(relay, "default", wallets) if relay else None
    servers = []
    for spec in specs:
        name, behaviour, port, *rest = spec.split(":")
        wallet = load_wallet(name, "default", wallets)
        SimChain(sim, hotkey=wallet.hotkey).publish_endpoint(netuid, "127.0.0.1", int(port))
        config = uvicorn.Config(make_app(name, behaviour, rest, cache, relay_wallet), host="127.0.0.1",
                                port=int(port), log_level="warning", lifespan="off")
        servers.append(uvicorn.Server(config))
    for s in servers:
        s.install_signal_handlers = lambda: None  # one handler for all, below
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    await stop.wait()
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", required=True)
    ap.add_argument("--wallets", required=True)
    ap.add_argument("--netuid", type=int, default=16)
    ap.add_argument("--relay-wallet")
    ap.add_argument("--miner", action="append", required=True, help="NAME:BEHAVIOUR:PORT[:...]")
    args = ap.parse_args()
    asyncio.run(serve(args.miner, args.sim, args.wallets, args.netuid, args.relay_wallet))


if __name__ == "__main__":
    main()
