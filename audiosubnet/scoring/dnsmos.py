"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 from the ONNX models bundled in `speechmos`.

Microsoft's DNS-Challenge DNSMOS (MIT License): a P.835 model on 9.01 s of raw 16 kHz audio and a
P.808 model on a 120-band log-mel spectrogram of the same window. Compared with `speechmos.dnsmos`:
- windows of every clip in a batch go through each model in one call (onnxruntime, one session,
  threads set once) instead of one clip and one window at a time;
- windows do not overlap: a clip gets round(duration / 9.01) windows (at least 1, at most
  `max_windows`) spread evenly from start to end, instead of one window per second; the model costs
  ~0.6 core-seconds per window, so a 30 s clip costs 3 windows instead of 22. Scores stay within
  ~0.1 of the 1 s hop (unit test);
- `backend="torch"` runs the same graphs with torch (`onnx_torch`), which is how DNSMOS keeps pace
  on a GPU box whose onnxruntime is CPU-only; `auto` = torch on CUDA, onnxruntime on CPU;
- the P.808 log-mel is computed in numpy (librosa's definition) rather than with librosa, or with
  torch on the GPU for the torch backend.
Short clips are repeated to fill a window, as upstream does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.errors import DependencyError
from audiosubnet.runtime.frameworks import package_file, require_torch, torch_module_bytes
from audiosubnet.scoring import dsp
from audiosubnet.scoring.base import Plan, ScoreItem, Scorer, ScorerSpec

if TYPE_CHECKING:
    import torch

    from audiosubnet.config import ScoreSettings

log = logging.getLogger(__name__)
WINDOW = int(9.01 * dsp.SR)  # 144160 samples
P835 = ("dnsmos_models", "sig_bak_ovr.onnx")
P808 = ("dnsmos_models", "model_v8.onnx")
# non-personalised polynomial fits (speechmos / DNS-Challenge dnsmos_local.py)
POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
POLY_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


def window_starts(n: int, hop: int | None = None, max_windows: int = 4) -> list[int]:
    """Start samples of the windows for a clip of `n` (>= WINDOW) samples.

    hop=None: round(n / WINDOW) non-overlapping windows spread evenly; hop=16000: upstream's 1 s hop.
    """
    if hop:  # upstream's count: int(floor(seconds) - 9.01) + 1 windows, dropping any that run past the end
        k = int(np.floor(n / dsp.SR) - WINDOW / dsp.SR) + 1
        return [i * hop for i in range(max(1, k)) if i * hop + WINDOW <= n] or [0]
    k = int(min(max_windows, max(1, round(n / WINDOW))))
    if k == 1:
        return [(n - WINDOW) // 2]
    return [int(round(s)) for s in np.linspace(0, n - WINDOW, k)]


def segments(x: np.ndarray, hop: int | None = None, max_windows: int = 4) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        x = np.zeros(1, np.float32)
    if len(x) < WINDOW:
        x = np.tile(x, int(np.ceil(WINDOW / len(x))))[:WINDOW]  # upstream repeats short clips
    return np.stack([x[s:s + WINDOW] for s in window_starts(len(x), hop, max_windows)])


def p808_features(segs: np.ndarray) -> np.ndarray:
    """(n, 900, 120) inputs of the P.808 model for (n, 144160) windows."""
    power = dsp.stft_power(segs[:, :-160], 321, 160)  # (n, 900, 161)
    mel = power @ dsp.mel_filters(dsp.SR, 321, 120).T
    db = dsp.power_to_db(mel, ref=mel.max(axis=(1, 2), keepdims=True), axis=(1, 2))
    return ((db + 40.0) / 40.0).astype(np.float32)


def p808_features_torch(segs: torch.Tensor) -> torch.Tensor:
    """`p808_features` with torch on the windows' device (same definition, for the GPU path)."""
    import torch

    x = segs[:, :-160].float()
    win = torch.hann_window(321, periodic=True, device=x.device)
    spec = torch.stft(x, n_fft=321, hop_length=160, win_length=321, window=win, center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2  # (n, 161, 900)
    fb = torch.from_numpy(np.array(dsp.mel_filters(dsp.SR, 321, 120))).to(x.device)
    mel = torch.matmul(fb, power)  # (n, 120, 900)
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    peak = db.amax(dim=(1, 2), keepdim=True)
    db = torch.maximum(db - peak, torch.full_like(db, -80.0))  # ref = max of the window, top_db 80
    return ((db + 40.0) / 40.0).transpose(1, 2).contiguous()


class DnsmosScorer(Scorer):
    name = "dnsmos"
    metrics = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
    windows_per_call = 64

    @classmethod
    def spec(cls, plan: Plan, settings: ScoreSettings) -> ScorerSpec:
        """onnxruntime on the CPU, or (backend torch; auto on CUDA) the same graphs on torch on the plan's device."""
        backend = settings.dnsmos_backend
        if backend == "auto":
            backend = "torch" if plan.device.startswith("cuda") else "onnxruntime"
        return ScorerSpec("dnsmos", backend, plan.device if backend == "torch" else "cpu",
                          lambda: cls(backend=settings.dnsmos_backend, max_windows=settings.dnsmos_max_windows))

    def __init__(self, model: str = "dnsmos", backend: str = "auto", hop_s: float | None = None,
                 max_windows: int = 4):
        super().__init__(model)
        self.backend = backend
        self.hop = int(hop_s * dsp.SR) if hop_s else None
        self.max_windows = max_windows
        # loaded models: onnxruntime sessions, or torch modules (runtime/onnx_torch.py)
        self.p835: Any = None
        self.p808: Any = None
        self.kind = ""

    def estimate_bytes(self) -> int:
        return 64 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        p835 = package_file("speechmos", *P835, what="DNSMOS")
        p808 = package_file("speechmos", *P808, what="DNSMOS")
        backend = self.backend
        if backend == "auto":
            backend = "torch" if device.startswith("cuda") else "onnxruntime"
        if backend == "torch":
            try:
                require_torch("DNSMOS on torch")
                from audiosubnet.runtime.onnx_torch import build_module

                self.p835, self.p808 = build_module(p835, device), build_module(p808, device)
            except DependencyError as e:
                if self.backend != "auto":
                    raise
                log.warning("DNSMOS falls back to onnxruntime on the CPU: %s (%s)", e, e.hint)
                backend = "onnxruntime"
            else:
                self.device = device
        if backend != "torch":
            from audiosubnet.runtime.frameworks import ort_session

            self.p835, self.p808 = ort_session(p835), ort_session(p808)
            self.device = "cpu"
        self.kind, self.dtype, self.loaded = backend, "float32", True

    def unload(self) -> None:
        self.p835 = self.p808 = None
        self.loaded = False

    def memory_bytes(self) -> int:
        if self.kind == "torch":
            return torch_module_bytes(self.p835, self.p808)
        return self.estimate_bytes()

    def _run(self, segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "torch":
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(segs).to(self.device)
                a = self.p835(x).float().cpu().numpy()
                b = self.p808(p808_features_torch(x)).float().cpu().numpy()
            return a, b
        feats = p808_features(segs)
        a = self.p835.run(None, {"input_1": segs})[0]
        b = self.p808.run(None, {"input_1": feats})[0]
        return a, b

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if not items:
            return []
        per = [segments(dsp.to_16k(it.audio), self.hop, self.max_windows) for it in items]  # type: ignore[arg-type]
        allsegs = np.ascontiguousarray(np.concatenate(per), dtype=np.float32)
        raw, p808 = [], []
        for i in range(0, len(allsegs), self.windows_per_call):
            a, b = self._run(allsegs[i:i + self.windows_per_call])
            raw.append(a)
            p808.append(b)
        raw_a, p808_a = np.concatenate(raw), np.concatenate(p808)[:, 0]
        sig, bak, ovr = POLY_SIG(raw_a[:, 0]), POLY_BAK(raw_a[:, 1]), POLY_OVR(raw_a[:, 2])
        out, start = [], 0
        for p in per:
            s = slice(start, start + len(p))
            start += len(p)
            vals = {"dnsmos_sig": sig[s].mean(), "dnsmos_bak": bak[s].mean(), "dnsmos_ovrl": ovr[s].mean(),
                    "dnsmos_p808": p808_a[s].mean()}
            out.append({k: float(np.nan_to_num(v, nan=1.0)) for k, v in vals.items()})
        return out
