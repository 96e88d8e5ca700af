"""Multi-process: `asn mine --network sim` (real Piper voice) on a real port, queried by a signed validator client.

The miner runs as a subprocess against a SimChain file that this process also writes (registrations) and reads
(the published endpoint). The answer must be a WAV that decodes and sounds like speech; SIGTERM must drain an
in-flight request and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

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


def _sigterm_finishes_the_request_in_flight(proc, wallet, endpoint: str, hotkey: str, text: str) -> None:
    """SIGTERM while a request is in flight: it is answered, then the miner exits 0."""

    async def go():
        async with MinerClient(wallet, timeout_s=30) as c:
            pending = asyncio.ensure_future(c.tts(endpoint, hotkey, TtsRequest(text=text)))
            await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            return await pending

    late = asyncio.run(go())
    assert late.ok, (late.status, late.error, late.message)
    assert proc.wait(timeout=60) == 0


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

        _sigterm_finishes_the_request_in_flight(proc, val, peer.endpoint, peer.hotkey, SENTENCE * 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert "status=200" in log and "status=403" in log and "miner stopped (drained)" in log, log[-2000:]


def test_asn_mine_with_workers_restarts_a_killed_worker_and_drains(tmp_path, procs):
    """`asn mine --workers 2`: one queue and one registry behind two HTTP processes; a worker killed with -9 is
    replaced; SIGTERM finishes the request in flight and leaves no process behind."""
    wallets = tmp_path / "wallets"
    miner = create_wallet("miner", "default", wallets)
    val = create_wallet("val", "default", wallets)
    stranger = create_wallet("stranger", "default", wallets)
    chain = SimChain(tmp_path / "sim.db", create=True)
    chain.register(16, miner.hotkey, miner.coldkey)
    chain.register(16, val.hotkey, val.coldkey, stake=1000, validator_permit=True)
    port = procs.free_port()
    env = {**os.environ, "ASN_SUBNET__SIM_PATH": str(tmp_path / "sim.db"), "ASN_LOG_LEVEL": "INFO",
           "ASN_HOME": str(tmp_path / "home")}
    log_path = tmp_path / "miner.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audiosubnet", "mine", "--network", "sim", "--wallet.name", "miner",
             "--wallet.path", str(wallets), "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
             "--model", "fake:delay_ms=300,max_batch=32", "--max-wait-ms", "50"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"127.0.0.1:{port}"
    try:
        procs.wait_healthy(proc, port, log_path, timeout=90.0)
        deadline = time.monotonic() + 30
        while len(first := procs.workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(first) == 2, first

        async def burst(n: int):
            async with MinerClient(val, timeout_s=30, max_connections=64) as c, MinerClient(stranger) as s:
                rs = await asyncio.gather(*(c.tts(endpoint, miner.hotkey, TtsRequest(text=f"{SENTENCE} {i}"))
                                            for i in range(n)))
                return rs, await s.tts(endpoint, miner.hotkey, TtsRequest(text=SENTENCE))

        rs, refused = asyncio.run(burst(24))
        assert all(r.ok for r in rs), [(r.status, r.message) for r in rs if not r.ok]
        assert refused.status == 403
        import httpx

        metrics = httpx.get(f"http://{endpoint}/metrics", trust_env=False).text  # one registry for both workers
        assert 'asn_miner_requests_total{endpoint="tts",status="200"} 24.0' in metrics
        assert 'asn_miner_policy_rejections_total{reason="not_registered"} 1.0' in metrics
        batches = float(re.search(r'asn_miner_batch_size_count\{[^}]*\} (\S+)', metrics).group(1))
        assert batches <= 6, metrics  # 24 requests through both workers, batched together in the one queue

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (len(now := procs.workers_of(proc.pid)) < 2 or victim in now) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(now) == 2 and victim not in now, now
        procs.wait_healthy(proc, port, log_path, timeout=30.0)
        rs, _ = asyncio.run(burst(8))
        assert all(r.ok for r in rs)

        _sigterm_finishes_the_request_in_flight(proc, val, endpoint, miner.hotkey, SENTENCE)
        for pid in now:
            assert not os.path.exists(f"/proc/{pid}"), pid  # joined by the main process, not orphaned
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert f"(pid {victim}) exited with status -9; starting another" in log, log[-3000:]
    assert "miner stopped (drained)" in log, log[-3000:]
