"""`asn serve` in process: the real app and service over the fake engine (a tone, 60 ms per character)."""

from __future__ import annotations

import asyncio
import io
import wave

import httpx
import numpy as np
import pytest

from audiosubnet.audio import Audio, wav_bytes
from audiosubnet.config import load_settings
from audiosubnet.engines.registry import EngineCache
from audiosubnet.serve.server import build_serve


class Served:
    """One app, its own EngineCache and event loop; `post`/`get` go through httpx's ASGI transport."""

    def __init__(self, home, budget_bytes=None, **serve):
        flags = {"model": "fake:default", "device": "cpu", "dtype": "float32", "serve.clone_model": "fake:clone=true",
                 "serve.max_wait_ms": 1.0}
        flags.update({f"serve.{k}": v for k, v in serve.items()})
        self.settings = load_settings(home=home, **flags)
        self.cache = EngineCache(budget_bytes=budget_bytes, device="cpu", dtype="float32")
        self.ctx, self.app = build_serve(self.settings, cache=self.cache)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.ctx.service.start())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://serve")

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def post(self, path, json=None, **kw) -> httpx.Response:
        return self.run(self.client.post(path, json=json, **kw))

    def get(self, path, **kw) -> httpx.Response:
        return self.run(self.client.get(path, **kw))

    def delete(self, path, **kw) -> httpx.Response:
        return self.run(self.client.delete(path, **kw))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.ctx.service.stop(timeout=5))
        self.cache.clear()
        self.loop.close()


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    s.close()


@pytest.fixture
def make_served(tmp_path):
    made = []

    def make(budget_bytes=None, **serve) -> Served:
        s = Served(tmp_path / f"home{len(made)}", budget_bytes, **serve)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def speech_clip(seconds: float = 2.0, sr: int = 16000) -> bytes:
    """A voiced-sounding test clip (harmonics with a pitch glide), WAV bytes."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2
    return wav_bytes(np.clip(x, -1, 1).astype(np.float32), sr)


def wav_info(data: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnframes()


__all__ = ["Audio", "Served", "speech_clip", "wav_info"]
