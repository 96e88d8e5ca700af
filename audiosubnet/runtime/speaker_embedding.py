"""Speaker embeddings shared by an engine and a scorer: the transformers x-vector encoder.

The `speecht5-clone` engine conditions SpeechT5 on an x-vector of the reference; the speaker-similarity
scorer compares x-vectors of a clone and its reference. Both use `XVectorEncoder`
(`AutoModelForAudioXVector`, e.g. WavLM-base-plus-sv) and the same clip preparation, so an engine and a
scorer given the same model compute the same embedding:

    with lease(cache, "microsoft/wavlm-base-plus-sv") as enc:
        e = enc.embed([reference])          # (1, dim) float32, rows L2-normalised

Clips are taken at 16 kHz, leading and trailing silence trimmed, padded to at least 0.1 s; embeddings are
L2-normalised rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from audiosubnet.audio import Audio, to_16k, trim_silence
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.frameworks import (
    from_pretrained,
    hf_folder,
    require_transformers,
    torch_device_dtype,
    torch_module_bytes,
)
from audiosubnet.runtime.loadable import Loadable

SR = 16000
MIN_SAMPLES = SR // 10  # 0.1 s
MAX_BATCH = 32


def prepare(x: np.ndarray) -> np.ndarray:
    """A 16 kHz clip as the encoders take it: silence trimmed at both ends, at least 0.1 s long."""
    x = trim_silence(np.asarray(x, dtype=np.float32), SR)
    if len(x) < MIN_SAMPLES:
        x = np.pad(x, (0, MIN_SAMPLES - len(x)))
    return x


def l2_rows(e: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (NaN become 0)."""
    e = np.nan_to_num(np.asarray(e, dtype=np.float32))
    n = np.linalg.norm(e, axis=-1, keepdims=True)
    rows: np.ndarray = (e / np.maximum(n, 1e-12)).astype(np.float32)
    return rows


class XVectorEncoder(Loadable):
    """A transformers x-vector model (`AutoModelForAudioXVector`) from a Hub repo or a local folder."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source[3:] if source.startswith("hf:") else source
        self.net: Any = None
        self.extractor: Any = None

    @property
    def key(self) -> str:
        return f"xvector:{self.source}"

    def estimate_bytes(self) -> int:
        return 400 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        transformers = require_transformers("the x-vector speaker encoder")
        folder = hf_folder(self.source, what="The x-vector speaker encoder")
        dev, tdt = torch_device_dtype(device, dtype)
        net = from_pretrained(transformers.AutoModelForAudioXVector, folder, tdt)
        extractor = transformers.AutoFeatureExtractor.from_pretrained(str(folder))
        self.use_model(net.to(dev).eval(), extractor, device=str(dev), dtype=str(tdt).replace("torch.", ""))

    def use_model(self, net: Any, extractor: Any, *, device: str, dtype: str) -> None:
        """Adopt an already built model (tests and benchmarks with random weights)."""
        self.net, self.extractor = net, extractor
        self.device, self.dtype, self.loaded = device, dtype, True

    def unload(self) -> None:
        self.net = self.extractor = None
        self.loaded = False

    def memory_bytes(self) -> int:
        return torch_module_bytes(self.net) or self.estimate_bytes()

    def forward(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) raw embeddings of prepared 16 kHz clips, in one padded batch with attention masks."""
        import torch

        order = np.argsort([-len(w) for w in wavs])
        inputs = self.extractor([wavs[i] for i in order], sampling_rate=SR, padding=True,
                                return_attention_mask=True, return_tensors="pt")
        dtype = next(self.net.parameters()).dtype
        feed = {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items()}
        with torch.inference_mode():
            emb = self.net(**feed).embeddings.float().cpu().numpy()
        out: np.ndarray = np.empty_like(emb)
        out[order] = emb
        return out

    def embed_16k(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) L2-normalised embeddings of 16 kHz waveforms."""
        return embed_prepared(self.forward, wavs)

    def embed(self, audios: Sequence[Audio]) -> np.ndarray:
        return self.embed_16k([to_16k(a) for a in audios])


def embed_prepared(forward: Any, wavs: Sequence[np.ndarray], max_batch: int = MAX_BATCH) -> np.ndarray:
    """Prepare 16 kHz clips, run `forward` on batches of at most `max_batch`, L2-normalise the rows."""
    if not wavs:
        return np.zeros((0, 1), np.float32)
    prepared = [prepare(w) for w in wavs]
    out = [forward(prepared[i:i + max_batch]) for i in range(0, len(prepared), max_batch)]
    return l2_rows(np.concatenate(out, axis=0))


def lease(cache: ModelCache, source: str) -> AbstractContextManager[XVectorEncoder]:
    """`with lease(cache, repo_or_folder) as enc:` the x-vector encoder on the cache's device."""
    enc = XVectorEncoder(source)
    dev = cache.device
    dt = cache.dtype if dev != "cpu" else "float32"
    return cache.lease(cache.key(enc.key, dev, dt), lambda: enc, device=dev, dtype=dt)
