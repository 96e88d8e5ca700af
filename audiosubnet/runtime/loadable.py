"""The Loadable contract: what the ModelCache loads, measures and frees.

Speech engines (`engines.base.SpeechEngine`), scorers (`scoring.base.Scorer`) and the helper models they
lease (the x-vector encoder, CLAP) are all Loadable:

- constructing one is cheap and safe: no weights are read;
- `setup(device, dtype)` loads the weights (the cache calls it once per key);
- `unload()` drops them (the cache empties the CUDA allocator afterwards);
- `estimate_bytes()` is known before loading (size on disk or from the config) and lets the cache make
  room first; `memory_bytes()` is what the loaded model holds (the cache measures CUDA allocations itself
  and falls back to this on the CPU).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

#: what a model is assumed to hold when it says nothing better
DEFAULT_ESTIMATE_BYTES = 64 * 2**20


class Loadable(ABC):
    """Something the ModelCache owns: cheap to construct, loaded by `setup`, freed by `unload`."""

    device: str
    dtype: str
    loaded: bool

    def __init__(self) -> None:
        self.device = "cpu"
        self.dtype = "float32"
        self.loaded = False

    @abstractmethod
    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Load weights onto `device` in `dtype`. Called once by the ModelCache."""

    def unload(self) -> None:
        """Drop references to weights. The cache empties the CUDA allocator afterwards."""
        self.loaded = False

    def memory_bytes(self) -> int:
        """Bytes the loaded model holds (device memory on CUDA, RAM on CPU)."""
        return self.estimate_bytes()

    def estimate_bytes(self) -> int:
        """Bytes the model will hold once loaded; known before loading (size on disk or config)."""
        return DEFAULT_ESTIMATE_BYTES
