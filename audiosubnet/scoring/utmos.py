"""UTMOS-class naturalness MOS for synthetic speech: a self-supervised speech encoder + a BLSTM head.

The architecture is the UTMOS22 strong learner (Saeki et al., VoiceMOS Challenge 2022; MIT) as
packaged for transformers encoders by SpeechBrain (`chaanks/UTMOS`: `utmos.ckpt` on top of
`chaanks/wav2vec2-small`): wav2vec2 frame features ++ a domain and a listener ("judge") embedding
-> 1-layer BLSTM -> MLP -> per-frame score, averaged over frames, x2 + 3. It predicts the naturalness
of TTS/VC output (trained on Blizzard and VCC listening tests), unlike DNSMOS (noise suppression).

Model ids (`score.utmos_model`): `utmos` = head `hf:chaanks/UTMOS` + encoder `hf:chaanks/wav2vec2-small`
(needs the Hub once); `<folder>` = a folder with `utmos.ckpt` (or `model.safetensors`) and the encoder
(`encoder/` subfolder, or `config.json` + weights beside the checkpoint). Checkpoint keys follow
SpeechBrain's layout (`ssl_encoder.model.*`, `domain_embedding`, `judge_embedding`, `decoder`,
`classifier`); encoder weights in the checkpoint override the encoder folder's.
Batches are sorted by length; the BLSTM runs on packed sequences and the mean covers valid frames only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.runtime.frameworks import hf_folder, require_transformers, torch_device_dtype, torch_module_bytes
from audiosubnet.scoring import dsp
from audiosubnet.scoring.base import Plan, ScoreItem, Scorer, ScorerSpec

if TYPE_CHECKING:
    from audiosubnet.config import ScoreSettings

log = logging.getLogger(__name__)

HEAD_REPO = "chaanks/UTMOS"
ENCODER_REPO = "chaanks/wav2vec2-small"
CKPT_NAMES = ("utmos.ckpt", "model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class HeadConfig:
    features_dim: int = 768
    num_domains: int = 3
    domain_dim: int = 128
    num_judges: int = 3000
    judge_dim: int = 128
    hidden: int = 512
    proj: int = 2048
    domain_id: int = 0
    judge_id: int = 288
    multiplier: float = 2.0
    offset: float = 3.0


def build_utmos(encoder: Any, head: HeadConfig | None = None) -> Any:
    """The UTMOS module around a transformers encoder (e.g. `Wav2Vec2Model`)."""
    import torch
    from torch import nn

    cfg = head or HeadConfig(features_dim=encoder.config.hidden_size)

    class _Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = encoder

    class Utmos(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.ssl_encoder = _Encoder()
            self.domain_embedding = nn.Embedding(cfg.num_domains, cfg.domain_dim)
            self.judge_embedding = nn.Embedding(cfg.num_judges, cfg.judge_dim)
            self.decoder = nn.LSTM(cfg.features_dim + cfg.domain_dim + cfg.judge_dim, cfg.hidden, num_layers=1,
                                   batch_first=True, bidirectional=True)
            self.classifier = nn.Sequential(nn.Linear(cfg.hidden * 2, cfg.proj), nn.ReLU(), nn.Dropout(0.3),
                                            nn.Linear(cfg.proj, 1))

        def forward(self, wav: torch.Tensor, lengths: torch.Tensor, use_mask: bool = False) -> torch.Tensor:
            enc = self.ssl_encoder.model
            mask = None
            if use_mask:
                mask = (torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]).long()
            feats = enc(wav, attention_mask=mask).last_hidden_state
            frames = enc._get_feat_extract_output_lengths(lengths).clamp(min=1, max=feats.shape[1])
            b, t, _ = feats.shape
            head_dtype = next(self.decoder.parameters()).dtype  # the head may stay fp32 under a half encoder
            dom = self.domain_embedding.weight[cfg.domain_id].to(head_dtype).expand(b, t, -1)
            judge = self.judge_embedding.weight[cfg.judge_id].to(head_dtype).expand(b, t, -1)
            x = torch.cat([feats.to(head_dtype), dom, judge], dim=2)
            packed = nn.utils.rnn.pack_padded_sequence(x, frames.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.decoder(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
            pred = self.classifier(out).squeeze(-1)  # (b, t)
            valid = (torch.arange(t, device=x.device)[None, :] < frames[:, None]).to(pred.dtype)
            mean = (pred * valid).sum(1) / valid.sum(1)
            mos: torch.Tensor = mean * cfg.multiplier + cfg.offset
            return mos

    return Utmos()


def _read_state(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state: dict[str, Any] = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class UtmosScorer(Scorer):
    name = "utmos"
    metrics = ("utmos",)
    max_batch = 16

    @classmethod
    def spec(cls, plan: Plan, settings: ScoreSettings) -> ScorerSpec:
        return ScorerSpec("utmos", settings.utmos_model, plan.device, lambda: cls(settings.utmos_model))

    def __init__(self, model: str = "utmos"):
        super().__init__(model)
        self.net: Any = None  # the loaded torch model
        self.normalize = False
        self.use_mask = False

    def estimate_bytes(self) -> int:
        return 450 * 2**20

    def _sources(self) -> tuple[Path, Path]:
        """(checkpoint file, encoder folder)."""
        if self.model in ("utmos", f"hf:{HEAD_REPO}"):
            head = hf_folder(HEAD_REPO, what="The UTMOS naturalness model")
            enc = hf_folder(ENCODER_REPO, what="The UTMOS naturalness model")
        else:
            src = self.model[3:] if self.model.startswith("hf:") else self.model
            head = hf_folder(src, what="The UTMOS naturalness model")
            enc = head / "encoder" if (head / "encoder" / "config.json").is_file() else head
        for name in CKPT_NAMES:
            if (head / name).is_file():
                return head / name, enc
        from audiosubnet.errors import ModelNotDownloadedError

        raise ModelNotDownloadedError(self.model, f"no {' / '.join(CKPT_NAMES)} in {head}")

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        if self.loaded:  # already built (e.g. adopted with use_model)
            return
        transformers = require_transformers("the UTMOS naturalness model")
        ckpt, enc_folder = self._sources()
        dev, tdt = torch_device_dtype(device, dtype)
        enc_cfg = transformers.AutoConfig.from_pretrained(str(enc_folder))
        state = _read_state(ckpt)
        prefix = "ssl_encoder.model."
        has_encoder = any(k.startswith(prefix) for k in state)
        if has_encoder:
            encoder = transformers.AutoModel.from_config(enc_cfg)
        else:
            encoder = transformers.AutoModel.from_pretrained(str(enc_folder))
        head = _head_config(state, enc_cfg.hidden_size)
        net = build_utmos(encoder, head)
        missing, unexpected = net.load_state_dict(state, strict=False)
        head_missing = [k for k in missing if not k.startswith("ssl_encoder.")]
        if head_missing:
            raise RuntimeError(f"{ckpt} lacks UTMOS head weights: {head_missing[:4]}")
        if has_encoder and missing:
            log.warning("UTMOS: %d encoder weights missing from %s (e.g. %s)", len(missing), ckpt.name, missing[0])
        if unexpected:
            log.debug("UTMOS: ignored %d unexpected keys (e.g. %s)", len(unexpected), unexpected[0])
        normalize = False
        pre = enc_folder / "preprocessor_config.json"
        if pre.is_file():
            normalize = bool(json.loads(pre.read_text()).get("do_normalize", False))
        self.use_model(net.to(dev, tdt).eval(), device=str(dev), normalize=normalize)

    def use_model(self, net: Any, *, device: str, normalize: bool = False) -> None:
        """Adopt a built module (tests and benchmarks with random weights). The small BLSTM head runs
        in float32 whatever the encoder's dtype (cuDNN RNNs and frame averages are safer there)."""
        for part in (net.domain_embedding, net.judge_embedding, net.decoder, net.classifier):
            part.float()
        self.net = net
        self.normalize = normalize
        self.use_mask = getattr(net.ssl_encoder.model.config, "feat_extract_norm", "group") == "layer"
        self.device = device
        self.dtype = str(next(net.ssl_encoder.parameters()).dtype).replace("torch.", "")
        self.loaded = True

    def unload(self) -> None:
        self.net = None
        self.loaded = False

    def memory_bytes(self) -> int:
        return torch_module_bytes(self.net) or self.estimate_bytes()

    def predict(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        order = np.argsort([-len(w) for w in wavs])
        out = np.zeros(len(wavs), np.float32)
        dtype = next(self.net.ssl_encoder.parameters()).dtype
        for s in range(0, len(order), self.max_batch):
            idx = order[s:s + self.max_batch]
            chunk = [np.asarray(wavs[i], np.float32) for i in idx]
            if self.normalize:
                chunk = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in chunk]
            n = max(len(w) for w in chunk)
            batch = np.zeros((len(chunk), n), np.float32)
            for r, w in enumerate(chunk):
                batch[r, :len(w)] = w
            lengths = torch.tensor([len(w) for w in chunk], device=self.device)
            with torch.inference_mode():
                pred = self.net(torch.from_numpy(batch).to(self.device, dtype), lengths, self.use_mask)
            out[idx] = pred.float().cpu().numpy()
        return out

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if not items:
            return []
        wavs = [dsp.to_16k(it.audio) for it in items]  # type: ignore[arg-type]
        wavs = [w if len(w) >= dsp.SR // 2 else np.pad(w, (0, dsp.SR // 2 - len(w))) for w in wavs]
        return [{"utmos": float(np.clip(np.nan_to_num(v, nan=1.0), 1.0, 5.0))} for v in self.predict(wavs)]


def _head_config(state: dict[str, Any], features_dim: int) -> HeadConfig:
    """Sizes read from the checkpoint (so a smaller stand-in loads with the same code)."""
    def shape(key: str, dim: int, default: int) -> int:
        t = state.get(key)
        return int(t.shape[dim]) if t is not None else default

    return HeadConfig(
        features_dim=features_dim,
        num_domains=shape("domain_embedding.weight", 0, 3), domain_dim=shape("domain_embedding.weight", 1, 128),
        num_judges=shape("judge_embedding.weight", 0, 3000), judge_dim=shape("judge_embedding.weight", 1, 128),
        hidden=shape("decoder.weight_hh_l0", 1, 512), proj=shape("classifier.0.weight", 0, 2048),
        judge_id=min(288, shape("judge_embedding.weight", 0, 3000) - 1),
    )
