"""A dishonest miner for the end-to-end validator test (run as its own process).

    python cheater_miner.py --behaviour copier|liar|silent|hang --port P --sim SIM --wallets W --wallet NAME
        [--target-endpoint HOST:PORT --target-hotkey SS58 --relay-wallet NAME]

- copier: relays each prompt to an honest miner (espeak: it renders a text identically every time) (signing with a validator-permitted hotkey it also
  owns), re-encodes the answer (mp3, -6 dB) and returns it as its own;
- liar: speaks a different sentence (espeak-ng);
- silent: returns digital silence of a plausible length;
- hang: accepts the request and never answers.
It does not check signatures (cheaters don't care) but speaks the wire protocol well enough to be scored.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audiosubnet import audio as audiolib
from audiosubnet.chain.bittensor import load_wallet
from audiosubnet.chain.sim import SimChain
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.cache import ModelCache
from audiosubnet.protocol import AudioMeta, TtsRequest
from audiosubnet.validator.client import MinerClient

LIE = "Bananas are an excellent source of potassium and fibre for hungry hikers on long trails."


def audio_response(a: audiolib.Audio) -> Response:
    headers = AudioMeta(model="cheat", sample_rate=a.sample_rate, duration_s=a.duration, elapsed_ms=1.0).headers()
    return Response(audiolib.encode(a, "wav"), media_type="audio/wav", headers=headers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--behaviour", required=True, choices=["copier", "liar", "silent", "hang"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--wallets", required=True)
    ap.add_argument("--wallet", required=True)
    ap.add_argument("--target-endpoint")
    ap.add_argument("--target-hotkey")
    ap.add_argument("--relay-wallet")
    args = ap.parse_args()

    wallet = load_wallet(args.wallet, "default", args.wallets)
    cache = ModelCache(budget_bytes=None)
    relay = load_wallet(args.relay_wallet, "default", args.wallets) if args.relay_wallet else None

    async def tts(request: Request) -> Response:
        req = TtsRequest.model_validate(json.loads(await request.body()))
        if args.behaviour == "hang":
            await asyncio.sleep(3600)
        if args.behaviour == "silent":
            return audio_response(audiolib.Audio(np.zeros(int(22050 * len(req.text) / 15), np.float32), 22050))
        if args.behaviour == "liar":
            with cache.engine("espeak:en-us") as e:
                return audio_response(e.synthesize([SynthesisRequest(LIE)])[0])
        async with MinerClient(relay, timeout_s=30) as client:  # copier
            got = await client.tts(args.target_endpoint, args.target_hotkey, req)
        if not got.ok:
            return Response(status_code=503)
        a = audiolib.decode(got.audio)
        mp3 = audiolib.encode(audiolib.Audio(a.samples * 0.5, a.sample_rate), "mp3")
        return audio_response(audiolib.decode(mp3))

    async def health(request: Request) -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/v1/tts", tts, methods=["POST"]), Route("/health", health)])
    SimChain(args.sim, hotkey=wallet.hotkey).publish_endpoint(16, "127.0.0.1", args.port)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
