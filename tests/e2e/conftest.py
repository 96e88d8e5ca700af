"""Helpers for the multi-process tests: free loopback ports and waiting for a server to answer /health."""

from __future__ import annotations

import socket
import time
import types
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc, port: int, log: Path, timeout: float = 120.0) -> None:
    """Until GET /health answers 200; fails with the process's log when it exits or the time is up."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def workers_of(pid: int) -> set[int]:
    """Worker processes (multiprocessing spawn children) of `pid`, from /proc."""
    import contextlib
    import os

    out = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as c:
                    if b"spawn_main" in c.read():
                        out.add(int(child))
    return out


@pytest.fixture(scope="session")
def procs():
    """The helpers above, for test modules (conftest modules are not importable by name)."""
    return types.SimpleNamespace(free_port=free_port, wait_healthy=wait_healthy, workers_of=workers_of)
