"""Multi-process: `asn mine --network sim` (real Piper voice) on a real port, queried by a signed validator client.

The miner runs as a subprocess against a SimChain file that this process also writes (registrations) and reads
(the published endpoint). The answer must be a WAV that decodes and sounds like speech; SIGTERM must drain an
in-flight request and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.chain.bittensor import create_wallet
from audiosubnet.chain.sim import SimChain
from audiosubnet.protocol import TtsRequest
from audiosubnet.validator.client import MinerClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENTENCE = "The quick brown fox jumps over the lazy dog, then rests by the river."


def _speech_like(a: audiolib.Audio) -> dict:
    """Crude but telling: loud enough, neither constant nor silence, energy in the speech band, pauses."""
    x = a.samples.astype(np.float64)
    frame = int(0.02 * a.sample_rate)
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = energy_db > energy_db.max() - 30
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / a.sample_rate)
    centroid = float(np.sum(freqs * spec) / np.sum(spec))
    zcr = float(np.mean(np.abs(np.diff(np.sign(x))) > 0))
    return {"rms_db": audiolib.rms_db(a.samples), "active": float(active.mean()), "centroid": centroid,
            "zcr": zcr, "energy_spread_db": float(np.percentile(energy_db, 90) - np.percentile(energy_db, 10))}


def test_asn_mine_on_sim_serves_speech_to_a_signed_validator(tmp_path, procs):
    wallets = tmp_path / "wallets"
    miner = create_wallet("miner", "default", wallets)
    val = create_wallet("val", "default", wallets)
    stranger = create_wallet("stranger", "default", wallets)
    sim_path = tmp_path / "sim.db"
    chain = SimChain(sim_path, create=True)
    chain.init(block_seconds=1.0, reset=True)
    chain.register(16, miner.hotkey, miner.coldkey)
    chain.register(16, val.hotkey, val.coldkey, stake=1000, validator_permit=True)

    port = procs.free_port()
    env = {**os.environ, "ASN_SUBNET__SIM_PATH": str(sim_path), "ASN_LOG_LEVEL": "INFO"}
    log_path = tmp_path / "miner.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audiosubnet", "mine", "--network", "sim", "--wallet.name", "miner",
             "--wallet.path", str(wallets), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        procs.wait_healthy(proc, port, log_path, timeout=90.0)
        (peer,) = [p for p in chain.peers(16) if p.hotkey == miner.hotkey]
        assert peer.endpoint == f"127.0.0.1:{port}"  # published by the miner process

        async def query():
            async with MinerClient(val, timeout_s=30) as c, MinerClient(stranger) as s:
                info = await c.info(peer.endpoint)
                ok = await c.tts(peer.endpoint, peer.hotkey, TtsRequest(text=SENTENCE))
                refused = await s.tts(peer.endpoint, peer.hotkey, TtsRequest(text=SENTENCE))
                return info, ok, refused

        info, ok, refused = asyncio.run(query())
        assert info.default_model == "piper:en_US-joe-medium"
        assert ok.ok, (ok.status, ok.error, ok.message)
        assert (refused.status, refused.code) == (403, "forbidden")
        a = audiolib.decode(ok.audio)
        assert a.sample_rate == 22050 and ok.meta.model == "piper:en_US-joe-medium"
        assert 2.5 < a.duration < 9.0, a.duration  # ~70 characters at 10-25 characters a second
        f = _speech_like(a)
        assert f["rms_db"] > -35, f  # not silent
        assert 0.4 < f["active"] < 0.99, f  # sound with short pauses
        assert 250 < f["centroid"] < 4000, f  # energy in the speech band
        assert f["energy_spread_db"] > 20, f  # syllables: loudness varies (a tone or noise would not)

        async def drain_on_sigterm():
            async with MinerClient(val, timeout_s=30) as c:
                pending = asyncio.ensure_future(c.tts(peer.endpoint, peer.hotkey, TtsRequest(text=SENTENCE * 5)))
                await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                return await pending

        late = asyncio.run(drain_on_sigterm())
        assert late.ok, (late.status, late.error, late.message)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert "status=200" in log and "status=403" in log and "miner stopped (drained)" in log, log[-2000:]
