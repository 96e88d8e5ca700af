"""A fake engine: a deterministic test signal (NOT speech), for tests and load benchmarks.

It goes through the real registry, cache, queues and HTTP stack, so a test or a benchmark that
uses it exercises everything but a neural network. Options ride in the model name:

    fake:default                      220 Hz tone, 60 ms per character, 16 kHz, batching
    fake:delay_ms=40,batching=false   each synthesize() call sleeps 40 ms first
    fake:fail=boom                    a text containing 'boom' raises InputError
    fake:error=oom                    a text containing 'oom' raises RuntimeError("CUDA error: out of memory")
    fake:crash=segv                   a text containing 'segv' reads address 0 (SIGSEGV: a native crash)
    fake:sr=22050,max_batch=4,ms_per_char=30,load_s=0.5
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SpeechEngine, SynthesisRequest
from audiosubnet.errors import InputError


def _options(model: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for part in model.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            opts[k.strip()] = v.strip()
    return opts


class FakeEngine(SpeechEngine):
    name = "fake"
    description = "deterministic test tone (not speech): for tests and load benchmarks"
    default_model = "default"
    license = "MIT (this project)"
    test_only = True  # not in `asn models list`

    #: every synthesize() call, as (model, batch size), process-wide (tests read it)
    calls: ClassVar[list[tuple[str, int]]] = []
    _calls_lock = threading.Lock()

    def __init__(self, model: str | None = None):
        super().__init__(model)
        o = _options(self.model)
        self.sr = int(o.get("sr", 16000))
        self.delay_s = float(o.get("delay_ms", 0)) / 1000.0
        self.load_s = float(o.get("load_s", 0))
        self.fail = o.get("fail")
        self.crash = o.get("crash")
        self.error = o.get("error")
        self.ms_per_char = float(o.get("ms_per_char", 60))
        self.batching = o.get("batching", "true").lower() != "false"
        self.batching_when_loaded = o.get("batching", "").lower() == "loaded"  # like MMS: batches on its device only
        self.max_batch = int(o.get("max_batch", 64))
        self.clone = o.get("clone", "false").lower() == "true"

    @property
    def capabilities(self) -> Capabilities:
        batching = self.batching and (self.loaded or not self.batching_when_loaded)
        return Capabilities(sample_rate=self.sr, max_text_chars=1000, batching=batching,
                            max_batch=self.max_batch if batching else 1, voices=("a", "b"),
                            default_voice="a", devices=("cpu", "cuda"), clone=self.clone, seedable=True)

    def estimate_bytes(self) -> int:
        return 1 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.load_s:
            time.sleep(self.load_s)
        self.device, self.dtype, self.loaded = device, dtype, True

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        with self._calls_lock:
            FakeEngine.calls.append((self.model, len(requests)))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for r in requests:
            if self.crash and self.crash in r.text:  # a real native crash: read address 0 (SIGSEGV)
                import ctypes

                ctypes.string_at(0)
            if self.error and self.error in r.text:  # not a typed error: what a torch engine raises
                raise RuntimeError("CUDA error: out of memory")
            if self.fail and self.fail in r.text:
                raise InputError(f"fake engine refuses text containing '{self.fail}'")
            n = max(1, int(len(r.text) * self.ms_per_char / 1000.0 / r.speed * self.sr))
            t = np.arange(n, dtype=np.float32) / self.sr
            f0 = 220.0 if (r.voice or "a") == "a" else 330.0
            x = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
            out.append(Audio(x.astype(np.float32), self.sr))
        return out
