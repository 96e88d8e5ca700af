"""Fixtures of the clone tests: folders, input files, a manual clock, a private model cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from audiosubnet import audio as audiolib

FAST_MODEL = "fake:clone=true"


def voiced(seconds: float = 1.5, f0: float = 140.0, sr: int = 16000, seed: int = 0) -> audiolib.Audio:
    """A harmonic, amplitude-modulated signal: enough like a voice for decoding and WORLD analysis."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 20))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)) + 0.003 * rng.standard_normal(len(t))
    return audiolib.Audio((0.3 * x / np.max(np.abs(x))).astype(np.float32), sr)


class Folders:
    def __init__(self, root: Path):
        self.root = root
        self.source = root / "vc_source"
        self.target = root / "vc_target"
        self.processed = root / "vc_processed"
        self.failed = root / "vc_failed"
        self.source.mkdir(parents=True, exist_ok=True)

    def options(self, **kw):
        from audiosubnet.jobs.clone_watch import WatchOptions

        base = dict(source=self.source, target=self.target, processed=self.processed, failed=self.failed,
                    model=FAST_MODEL, settle_s=0.0, orphan_timeout_s=600.0, use_watchdog=False)
        base.update(kw)
        return WatchOptions(**base)

    def drop(self, stem: str, text: str | bytes | None = "Hello there, this is a test.", *, fmt: str = "wav",
             audio: audiolib.Audio | bytes | None = None, seconds: float = 1.5, with_audio: bool = True) -> None:
        if with_audio:
            a = audio if audio is not None else voiced(seconds, seed=hash(stem) % 1000)
            data = a if isinstance(a, bytes) else audiolib.encode(a, fmt)
            (self.source / f"{stem}.{fmt}").write_bytes(data)
        if text is not None:
            raw = text if isinstance(text, bytes) else text.encode()
            (self.source / f"{stem}.txt").write_bytes(raw)

    @staticmethod
    def names(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


class ManualClock:
    """Wall time that moves only when told (sleep advances it)."""

    def __init__(self, start: float | None = None):
        self.t = time.time() if start is None else start

    def time(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def folders(tmp_path) -> Folders:
    return Folders(tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_voice():
    return voiced


@pytest.fixture
def fresh_cache():
    """A private CPU cache (engines load per test; the fake engine loads instantly)."""
    from audiosubnet.engines.registry import EngineCache

    cache = EngineCache(budget_bytes=None, device="cpu", dtype="float32")
    yield cache
    cache.clear()
