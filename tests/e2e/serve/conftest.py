"""A real `asn serve` subprocess on a loopback port (the offline Piper voice, WORLD for saved voices)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path, *args: str):
        self.port = free_port()
        self.home = home
        self.log = home / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASN_") or k in ("ASN_TORCH_THREADS",
                                                                                        "ASN_ORT_THREADS")}
        env.update(ASN_HOME=str(home), ASN_NO_PROGRESS="1", HF_HUB_OFFLINE="1", HF_HOME=str(home / "hf"))
        self.cmd = [sys.executable, "-m", "audiosubnet", "serve", "--port", str(self.port), "--device", "cpu", *args]
        home.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"asn serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/health", timeout=1.0, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"asn serve not healthy after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve_home")).wait()
    # first request loads the voice: keep that out of the timings below
    httpx.post(s.base + "/v1/audio/speech", json={"input": "Warm up.", "response_format": "pcm"}, timeout=120,
               trust_env=False).raise_for_status()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    started: list[Server] = []

    def start(*args: str) -> Server:
        s = Server(tmp_path_factory.mktemp("serve_home"), *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
