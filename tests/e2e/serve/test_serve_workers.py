"""`asn serve --workers 2` as processes (the fake engine), through the real `openai` SDK: wav, mp3, streamed pcm
and sse through both HTTP workers, a saved voice shared through the disk, bad requests still 4xx, one metrics
registry in the main process, a worker killed with -9 replaced, keep-alive unloading in the main process seen in
every worker's /health, SIGTERM exits 0 and leaves no worker behind (rate limits: the unit test)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

openai = pytest.importorskip("openai")

from audiosubnet.audio import wav_bytes  # noqa: E402
from audiosubnet.serve.encode import decode_any  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads worker pids from /proc")]

LONG = " ".join(f"Sentence number {i} is here." for i in range(8))


def _clip() -> bytes:
    import numpy as np

    t = np.arange(48000) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(np.pi * t)) / 16000
    return wav_bytes((sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2).astype(np.float32), 16000)


def _pids_in_log(server, rid_pattern: str = r"speech caller=.* pid=(\d+)") -> set[int]:
    return {int(p) for p in re.findall(rid_pattern, server.log.read_text())}


def test_two_workers_serve_every_answer_share_voices_limits_metrics_and_survive_a_kill(start_server, procs):
    s = start_server("--workers", "2", "--model", "fake:default", "--clone-model", "fake:clone=true",
                     "--api-key", "k1", "--api-key", "k2", "--keep-alive", "2s",
                     "--rate-limit", "100000").wait(120)  # rounds until both workers answered: not the 600/min
    deadline = time.monotonic() + 30
    while len(first := procs.workers_of(s.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(first) == 2, first
    # a new connection per request: the kernel hands each one to whichever worker accepts first (a kept-alive
    # pool would stay with the worker that accepted its connections, and rounds would never reach the other)
    c = openai.OpenAI(base_url=s.base + "/v1", api_key="k1", max_retries=0, timeout=60,
                      http_client=httpx.Client(trust_env=False, timeout=60,
                                               limits=httpx.Limits(max_keepalive_connections=0)))
    http = httpx.Client(base_url=s.base, trust_env=False, timeout=60, headers={"authorization": "Bearer k1"})

    # wav, mp3 (encoded by the worker), streamed pcm and sse, concurrently until both workers have answered
    def one(i: int) -> tuple[str, int]:
        kind = ("wav", "pcm", "sse", "mp3")[i % 4]
        if kind in ("wav", "mp3"):
            data = c.audio.speech.create(model="tts-1", voice="alloy", input=f"Hello number {i}.",
                                         response_format=kind).content
            assert data[:4] == b"RIFF" if kind == "wav" else decode_any(data).duration > 0.5
            return kind, len(data)
        with c.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=LONG, response_format="pcm",
                extra_body={"stream_format": "sse"} if kind == "sse" else None) as r:
            body = r.read()
        if kind == "sse":
            events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
            assert events[-1]["type"] == "speech.audio.done"
            return kind, sum(len(base64.b64decode(e["audio"])) for e in events[:-1])
        return kind, len(body)

    with ThreadPoolExecutor(6) as pool:  # the kernel hands connections to whichever worker accepts first:
        deadline = time.monotonic() + 90  # on a loaded box one worker may take many rounds alone
        while True:
            done = list(pool.map(one, range(12)))
            if _pids_in_log(s) >= first or time.monotonic() > deadline:
                break
    assert _pids_in_log(s) >= first, "one worker answered every request"
    sizes = {kind: {n for k, n in done if k == kind} for kind in ("wav", "pcm", "sse")}
    assert sizes["pcm"] == sizes["sse"] and min(sizes["pcm"]) > 24000 * 2 * 8  # the whole long text, both ways

    # a saved voice made through one request is usable by the next ones, whichever worker takes them
    up = http.post("/v1/audio/voices", json={"audio": base64.b64encode(_clip()).decode(), "text": "a reference"})
    assert up.status_code == 201, up.text
    vid = up.json()["id"]
    with ThreadPoolExecutor(4) as pool:
        used = list(pool.map(lambda i: c.audio.speech.create(model="tts-1", voice=vid, input=f"Clone {i}.",
                                                             response_format="wav").content, range(8)))
    assert all(u[:4] == b"RIFF" for u in used)

    # bad requests stay 4xx, through the workers
    assert http.post("/v1/audio/speech", content=b"{not json").status_code == 400
    assert http.post("/v1/audio/speech", json={"input": "x", "model": "nope"}).status_code == 404
    assert http.post("/v1/audio/speech", json={"input": "x", "voice": "voice_0000000000000000"}).status_code == 404
    assert http.post("/v1/audio/speech", json={"input": "x" * 100_000}).status_code == 413
    assert http.post("/v1/audio/speech", json={"input": "x"}, headers={"authorization": "Bearer no"}).status_code \
        == 401

    # one registry: /metrics counts every worker's answers (k2 is untouched by the rest)
    metrics = http.get("/metrics").text
    served = float(re.search(r'asn_serve_requests_total\{endpoint="speech",status="200"\} (\S+)', metrics)[1])
    assert served == len(_pids_in_log_lines(s, "status=200")), metrics

    # a worker killed with -9 is replaced; requests go on
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (len(now := procs.workers_of(s.proc.pid)) < 2 or victim in now) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(now) == 2 and victim not in now, now
    with ThreadPoolExecutor(4) as pool:
        assert all(k for k, _ in pool.map(one, range(6)))

    # keep-alive: the main process unloads the idle models; every worker's /health shows it
    deadline = time.monotonic() + 20
    while http.get("/health").json()["models_loaded"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert http.get("/health").json()["models_loaded"] == []

    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0
    for pid in now:
        assert not os.path.exists(f"/proc/{pid}"), pid
    log = s.log.read_text()
    assert f"(pid {victim}) exited with status -9; starting another" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _pids_in_log_lines(server, needle: str) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "speech caller=" in line and needle in line]
