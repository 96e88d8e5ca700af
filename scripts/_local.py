"""Helpers of the scripts (and the end-to-end tests) that start local `asn` processes: a free loopback port,
waiting for a server's /health, and the tests-only fake engine made visible to the processes they start."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from pathlib import Path


def install_test_engines() -> None:
    """Register the fake engine (tests-only) as an entry point of this environment, as the tests do
    (tests/asn_test_engines.py), so every process started from here finds it too."""
    path = Path(__file__).resolve().parents[1] / "tests" / "asn_test_engines.py"
    spec = importlib.util.spec_from_file_location("asn_test_engines", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen, base: str, log: Path, timeout: float = 120.0,
                 name: str = "the server") -> None:
    """Until GET {base}/health answers 200. RuntimeError with the end of `log` when `proc` exits first or the
    time is up."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(base + "/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not healthy after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
