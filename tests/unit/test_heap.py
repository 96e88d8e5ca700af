"""heap.py: freed memory inside malloc's arenas goes back to the OS (glibc; skipped elsewhere)."""

from __future__ import annotations

import threading

import pytest

from audiosubnet import heap

pytestmark = pytest.mark.skipif(heap._libc() is None, reason="needs glibc")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


def _fragment(mib: int) -> list:
    """Many small blocks freed but for one at the end, which pins the heap's top: glibc cannot shrink it by
    itself, the pages stay resident inside the arena (what a long-running server accumulates)."""
    blocks = [bytearray(4000) for _ in range(mib * 256)]
    for b in blocks:
        b[::512] = b"x" * len(b[::512])  # touch every page
    pin = bytearray(4000)
    del blocks
    return [pin]


def test_trim_gives_freed_arena_pages_back():
    held = _fragment(200)
    before = _rss_mib()
    assert heap.trim() is True
    after = _rss_mib()
    assert before - after > 100, (before, after)
    del held


def test_the_trimmer_trims_in_the_background(monkeypatch):
    calls = threading.Event()
    monkeypatch.setattr(heap, "trim", lambda: calls.set() or True)
    thread = heap.start_trimmer(0.05)
    assert thread is not None and thread.daemon and calls.wait(2.0)
    assert heap.start_trimmer(0) is None


def test_arenas_can_be_limited():
    assert heap.limit_arenas(8) is True  # glibc's default for this box's cores: changes nothing here
