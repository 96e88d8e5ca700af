"""Helpers for the multi-process tests: free loopback ports and waiting for a server to answer /health."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from _local import free_port  # noqa: E402  (scripts/_local.py: shared with the scripts)
from _local import wait_healthy as _wait_healthy  # noqa: E402


def wait_healthy(proc, port: int, log: Path, timeout: float = 120.0) -> None:
    """Until GET /health answers 200; fails with the process's log when it exits or the time is up."""
    _wait_healthy(proc, f"http://127.0.0.1:{port}", log, timeout)


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
