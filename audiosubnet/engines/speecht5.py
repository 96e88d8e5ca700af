"""SpeechT5 text-to-speech + HiFi-GAN vocoder through transformers.

Model ids: `speecht5:microsoft/speecht5_tts` (the default), `hf:microsoft/speecht5_tts`, a local folder
(config.json with model_type "speecht5" + spm_char.model), or `speecht5:MODEL+VOCODER` to name the
vocoder. The vocoder is, in order: the `+VOCODER` part, a `hifigan/` folder inside a local model
folder, `$ASN_SPEECHT5_VOCODER`, else `microsoft/speecht5_hifigan`.

Voices are 512-dim x-vectors: the presets shipped in `audiosubnet/data/speecht5_speakers/`
(see the README there for where they come from) or any `.npy` file path.

Decoding is our own loop over the model's modules instead of `SpeechT5ForTextToSpeech.generate`:
- the decoder prenet runs on the newest frame only (transformers reruns it over the whole
  sequence every step) and its always-on dropout draws from each item's own seeded generator,
  so an item's audio is the same alone or in a batch, and the same seed gives the same audio;
- self-attention keys/values live in one preallocated cache that doubles when full, the
  cross-attention keys/values are computed once, q/k/v are one fused matmul;
- stop decisions stay on the device: the host looks every `sync_every` steps (16 on CUDA, each
  step on CPU), not after every step;
- min/max lengths are per item (from its own token count), the postnet and HiFi-GAN mask each
  item's padding, and outputs are trimmed to each item's frames.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SynthesisRequest, request_seed
from audiosubnet.engines.hf import (
    HFSpeechEngine,
    hifigan_forward,
    length_sorted_chunks,
    padded_ids,
    strip_weight_norm,
)
from audiosubnet.errors import EngineError, InputError
from audiosubnet.runtime import hub

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_VOCODER = "microsoft/speecht5_hifigan"
SPEAKERS_DIR = Path(__file__).resolve().parent.parent / "data" / "speecht5_speakers"


@functools.lru_cache(maxsize=1)
def preset_index() -> dict[str, dict[str, Any]]:
    """Shipped speaker presets: name -> manifest entry (file, placeholder, source...)."""
    manifest = SPEAKERS_DIR / "speakers.json"
    entries: dict[str, dict[str, Any]] = {}
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8")).get("speakers", {})
        except (OSError, ValueError):
            entries = {}
    for f in sorted(SPEAKERS_DIR.glob("*.npy")):
        entries.setdefault(f.stem, {"file": f.name})
    return {k: v for k, v in entries.items() if (SPEAKERS_DIR / v.get("file", f"{k}.npy")).is_file()}


def load_xvector(path: Path, dim: int = 512) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the speaker x-vector {path}: {e}") from e
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if x.shape[0] != dim or not np.isfinite(x).all():
        raise InputError(f"{path} is not a {dim}-dim speaker x-vector (shape {x.shape})")
    return x


class SpeechT5Engine(HFSpeechEngine):
    name = "speecht5"
    description = "Microsoft SpeechT5 + HiFi-GAN through transformers; x-vector voices"
    default_model = "microsoft/speecht5_tts"
    hf_prefixes = ("microsoft/speecht5_tts",)
    hf_model_types = ("speecht5",)
    license = "transformers Apache-2.0; SpeechT5 and HiFi-GAN weights MIT"
    known_models = ("microsoft/speecht5_tts",)
    known_bytes = {"microsoft/speecht5_tts": 578 * 2**20, DEFAULT_VOCODER: 50 * 2**20}
    default_voice = "slt"

    cpu_batch: ClassVar[int] = 8  # batching SpeechT5 on CPU is ~1.7x faster than one by one
    cuda_batch: ClassVar[int] = 32

    def __init__(self, model: str | None = None):
        super().__init__(model)
        # loaded transformers objects: typed at that boundary as Any
        self._model: Any = None
        self._vocoder: Any = None
        self._tokenizer: Any = None
        self._fast: dict[str, Any] = {}  # fused weights: tensors and per-layer lists of tensors
        self._voices: OrderedDict[str, torch.Tensor] = OrderedDict()  # name -> x-vector on the device (LRU)
        self.forward_batch = self.cpu_batch
        # generation settings (transformers' defaults); scripts may force lengths for timing
        self.threshold = 0.5
        self.minlenratio = 0.0
        self.maxlenratio = 20.0
        self.sync_every = 1
        self.dropout_chunk = 64

    # ---- files ------------------------------------------------------------------------------
    def _split(self) -> tuple[str, str | None]:
        m = self.model
        if "+" in m and not Path(m).expanduser().exists():
            tts, voc = m.split("+", 1)
            return tts, voc or None
        return m, None

    def repos(self) -> list[str]:
        tts, voc = self._split()
        if voc is None:
            inner = Path(tts).expanduser() / "hifigan"
            if hub.is_local(tts) and (inner / "config.json").is_file():
                voc = str(inner)
            else:
                voc = os.environ.get("ASN_SPEECHT5_VOCODER") or DEFAULT_VOCODER
        return [tts, voc]

    def status_notes(self) -> str:
        presets = preset_index()
        if any(v.get("placeholder") for v in presets.values()):
            return "speaker presets are placeholders: run scripts/make_speecht5_presets.py"
        return ""

    # ---- capabilities -----------------------------------------------------------------------
    def _capabilities(self) -> Capabilities:
        voices = tuple(preset_index())
        voc_cfg = self.read_config(self.repos()[1]) if not self.loaded else self._vocoder.config.to_dict()
        cuda = self.device.startswith("cuda")
        return Capabilities(
            sample_rate=int(voc_cfg.get("sampling_rate", 16000)),
            max_text_chars=400,
            batching=True,
            max_batch=self.cuda_batch if cuda else self.cpu_batch,
            voices=voices,
            open_voices=True,
            default_voice=self.default_voice if self.default_voice in voices else (voices[0] if voices else None),
            devices=("cpu", "cuda"),
            seedable=True,
            languages=("en",),
        )

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        voice = request.voice
        if voice and voice not in preset_index() and not (voice.endswith(".npy") and Path(voice).is_file()):
            raise InputError(f"unknown voice '{voice}' for {self.model_id}: use a preset "
                             f"({', '.join(preset_index()) or 'none shipped'}) or a path to a 512-dim .npy x-vector")
        if self.loaded:
            n = len(self._token_ids(request.text))
            limit = self._model.config.max_text_positions
            if n > limit:
                raise InputError(f"text is {n} tokens; {self.model_id} takes at most {limit}")

    # ---- load -------------------------------------------------------------------------------
    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        with self._lock:
            tts_repo, voc_repo = self.repos()  # files first: a missing model fails before imports
            folder, voc_folder = self.local(tts_repo, download=True), self.local(voc_repo, download=True)
            tdtype = self.torch_setup(device, dtype)
            from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Tokenizer

            try:
                tok = SpeechT5Tokenizer.from_pretrained(folder)
                model = SpeechT5ForTextToSpeech.from_pretrained(folder, dtype=tdtype)
                vocoder = SpeechT5HifiGan.from_pretrained(voc_folder)  # fp32: weight norm folds in fp32
            except ImportError as e:
                from audiosubnet.errors import DependencyError

                raise DependencyError(getattr(e, "name", None) or "sentencepiece", "hf", "the speecht5 engine") from e
            except Exception as e:
                raise EngineError(f"cannot load {self.model_id} from {folder} + {voc_folder}: {e}") from e
            strip_weight_norm(vocoder)
            model.to(device=device, dtype=tdtype).eval()  # type: ignore[call-arg]  # transformers types .to() through a decorator that drops self
            vocoder.to(device=device, dtype=tdtype).eval()  # type: ignore[call-arg]  # transformers types .to() through a decorator that drops self
            self._model, self._vocoder, self._tokenizer = model, vocoder, tok
            self._fast = self._precompute(model)
            self._voices = OrderedDict()
            presets = preset_index()
            if any(v.get("placeholder") for v in presets.values()):
                log.warning("speecht5 speaker presets are placeholders (random x-vectors, not CMU ARCTIC); "
                            "run scripts/make_speecht5_presets.py on a machine with internet access")
            cuda = device.startswith("cuda")
            self.forward_batch = self.cuda_batch if cuda else self.cpu_batch
            self.sync_every = 16 if cuda else 1
            self._caps = None
            self.loaded = True

    def _precompute(self, model: Any) -> dict[str, Any]:
        """Fused and sliced weights the decode loop uses every step (views where possible)."""
        import torch

        dec = model.speecht5.decoder
        prenet, layers = dec.prenet, dec.wrapped_decoder.layers
        hidden = model.config.hidden_size
        spk_w = prenet.speaker_embeds_layer.weight
        f = {
            "w_x": spk_w[:, :hidden].contiguous(),
            "w_s": spk_w[:, hidden:].contiguous(),
            "b_s": prenet.speaker_embeds_layer.bias,
            "alpha_pe": (prenet.encode_positions.alpha * prenet.encode_positions.pe[0]).detach(),
            "wqkv": [], "bqkv": [],
        }
        for layer in layers:
            sa = layer.self_attn
            f["wqkv"].append(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]).detach())
            f["bqkv"].append(torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias]).detach())
        return f

    def modules(self) -> list[torch.nn.Module]:
        return [self._model, self._vocoder]

    def extra_tensors(self) -> list[torch.Tensor | None]:
        f = self._fast
        if not f:
            return []
        return [f["w_x"], f["w_s"], f["alpha_pe"], *f["wqkv"], *f["bqkv"]]

    def drop(self) -> None:
        self._model = self._vocoder = self._tokenizer = None
        self._fast, self._voices = {}, OrderedDict()

    # ---- voices and text --------------------------------------------------------------------
    def _speaker(self, voice: str | None) -> torch.Tensor:
        import torch

        name = voice or self.capabilities.default_voice
        if name is None:
            raise InputError(f"{self.model_id} has no speaker presets; give a .npy x-vector path as the voice")
        if name in self._voices:
            self._voices.move_to_end(name)
            return self._voices[name]
        presets = preset_index()
        path = SPEAKERS_DIR / presets[name].get("file", f"{name}.npy") if name in presets else Path(name)
        vec = load_xvector(path, self._model.config.speaker_embedding_dim)
        self._voices[name] = torch.from_numpy(vec).to(self.device, self._model.dtype)
        while len(self._voices) > 512:  # the oldest go first; voices added for this batch stay
            self._voices.popitem(last=False)
        return self._voices[name]

    def _token_ids(self, text: str) -> list[int]:
        ids = self.cached_ids(text, lambda t: self._tokenizer(t, normalize=True)["input_ids"])
        if len(ids) < 2:
            raise InputError(f"nothing in the text is pronounceable by {self.model_id}")
        return ids

    # ---- synthesis --------------------------------------------------------------------------
    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        with self._lock, torch.inference_mode():
            ids = [self._token_ids(r.text) for r in requests]
            sr = int(self._vocoder.config.sampling_rate)
            out: list[Audio | None] = [None] * len(requests)
            for chunk in length_sorted_chunks([len(x) for x in ids], self.forward_batch):
                waves = self._run([ids[i] for i in chunk], [requests[i] for i in chunk])
                for i, w in zip(chunk, waves, strict=True):
                    out[i] = Audio(w, sr)
            return out  # type: ignore[return-value]

    def _run(self, ids: list[list[int]], requests: list[SynthesisRequest]) -> list[np.ndarray]:
        mel, frames = self.spectrogram(ids, [self._speaker(r.voice) for r in requests],
                                       [request_seed(r) for r in requests])
        speeds = [r.speed for r in requests]
        if any(s != 1.0 for s in speeds):
            mel, frames = _retime(mel, frames, speeds)
        voc = self._vocoder
        if voc.config.normalize_before:
            mel = (mel - voc.mean) / voc.scale
        wave, lens = hifigan_forward(voc, mel.transpose(1, 2), frames)
        host = wave.float().cpu().numpy()
        return [np.ascontiguousarray(host[i, : lens[i]]) for i in range(len(ids))]

    def spectrogram(self, ids: list[list[int]], speakers: list[torch.Tensor],
                    seeds: list[int]) -> tuple[torch.Tensor, list[int]]:
        """Log-mel spectrograms (batch, frames, mels) after the postnet, and each item's frame count."""
        import torch

        model, cfg, dev = self._model, self._model.config, torch.device(self.device)
        dt = model.dtype
        batch = len(ids)
        in_lens = [len(x) for x in ids]
        id_t, mask_t = padded_ids(ids, cfg.pad_token_id, dev)
        enc = model.speecht5.encoder(input_values=id_t, attention_mask=mask_t, return_dict=True).last_hidden_state

        r, n_mel = cfg.reduction_factor, cfg.num_mel_bins
        max_pos = self._fast["alpha_pe"].shape[0]
        maxlen = [max(1, min(int(n * self.maxlenratio / r), max_pos - 1)) for n in in_lens]
        minlen = [min(int(n * self.minlenratio / r), m) for n, m in zip(in_lens, maxlen, strict=True)]
        steps, lens = self._decode(enc, mask_t.bool(), torch.stack(speakers), seeds, minlen, maxlen)

        # postnet over each item's own frames (padding zeroed before every convolution)
        mel = steps.reshape(batch, -1, n_mel)
        frames = [n * r for n in lens]
        lens_t = torch.tensor(frames, device=dev)
        m = (torch.arange(mel.shape[1], device=dev)[None, :] < lens_t[:, None]).unsqueeze(1).to(dt)
        h = mel.transpose(1, 2)
        for layer in model.speech_decoder_postnet.layers:
            h = layer(h * m)
        mel = mel + h.transpose(1, 2)
        return mel, frames

    def _decode(self, enc: torch.Tensor, enc_mask: torch.Tensor, speakers: torch.Tensor, seeds: list[int],
                minlen: list[int], maxlen: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The autoregressive loop. Returns (feat_out frames (batch, steps, r, mels), steps per item)."""
        import torch
        import torch.nn.functional as F

        model, cfg, f = self._model, self._model.config, self._fast
        dev, dt = enc.device, enc.dtype
        batch = enc.shape[0]
        prenet = model.speecht5.decoder.prenet
        layers = model.speecht5.decoder.wrapped_decoder.layers
        post = model.speech_decoder_postnet
        hidden, heads = cfg.hidden_size, cfg.decoder_attention_heads
        hd, r, n_mel = hidden // heads, cfg.reduction_factor, cfg.num_mel_bins
        p = float(cfg.speech_decoder_prenet_dropout)
        n_pre, units = len(prenet.layers), cfg.speech_decoder_prenet_units

        spk = F.normalize(speakers.to(dt), dim=-1)
        spk_term = F.linear(spk, f["w_s"], f["b_s"])  # the speaker's share of the prenet's last layer
        cross = []
        for layer in layers:
            ca = layer.encoder_attn
            k = ca.k_proj(enc).view(batch, -1, heads, hd).transpose(1, 2)
            v = ca.v_proj(enc).view(batch, -1, heads, hd).transpose(1, 2)
            cross.append((k, v))
        attn_mask = enc_mask[:, None, None, :]
        gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
        keep = 1.0 / (1.0 - p) if p < 1 else 0.0

        total = max(maxlen)
        cap = min(total, 256)
        kv = torch.zeros(len(layers), 2, batch, heads, cap, hd, device=dev, dtype=dt)
        spec_buf = torch.zeros(batch, cap, r, n_mel, device=dev, dtype=dt)
        stop = torch.zeros(batch, dtype=torch.long, device=dev)
        min_t = torch.tensor(minlen, device=dev)
        max_t = torch.tensor(maxlen, device=dev)
        frame = torch.zeros(batch, n_mel, device=dev, dtype=dt)
        masks: torch.Tensor | None = None
        t = 0
        for t in range(total):
            if t >= cap:  # grow the caches geometrically
                cap = min(total, cap * 2)
                kv = _grow(kv, cap, dim=4)
                spec_buf = _grow(spec_buf, cap, dim=1)
            c = t % self.dropout_chunk
            if c == 0:  # each item's prenet dropout from its own generator, a chunk of steps at a time
                shape = (self.dropout_chunk, n_pre, units)
                masks = torch.stack([torch.rand(shape, generator=g, device=dev) >= p for g in gens]).to(dt) * keep

            h = frame
            for li, lin in enumerate(prenet.layers):
                assert masks is not None  # set at c == 0
                h = F.relu(lin(h)) * masks[:, c, li]
            h = prenet.final_layer(h) + f["alpha_pe"][t]
            x = F.relu(F.linear(h, f["w_x"]) + spk_term).unsqueeze(1)
            for li, layer in enumerate(layers):
                qkv = F.linear(x, f["wqkv"][li], f["bqkv"][li]).view(batch, 3, heads, hd).transpose(0, 1)
                q, k, v = qkv[0].unsqueeze(2), qkv[1], qkv[2]
                kv[li, 0, :, :, t] = k
                kv[li, 1, :, :, t] = v
                a = F.scaled_dot_product_attention(q, kv[li, 0, :, :, : t + 1], kv[li, 1, :, :, : t + 1])
                a = layer.self_attn.out_proj(a.transpose(1, 2).reshape(batch, 1, hidden))
                x = layer.self_attn_layer_norm(x + a)
                ca = layer.encoder_attn
                q = ca.q_proj(x).view(batch, 1, heads, hd).transpose(1, 2)
                a = F.scaled_dot_product_attention(q, cross[li][0], cross[li][1], attn_mask=attn_mask)
                x = layer.encoder_attn_layer_norm(x + ca.out_proj(a.transpose(1, 2).reshape(batch, 1, hidden)))
                x = layer.final_layer_norm(x + layer.feed_forward(x))
            y = x[:, 0]
            spec = post.feat_out(y).view(batch, r, n_mel)
            spec_buf[:, t] = spec
            frame = spec[:, -1]
            prob = torch.sigmoid(post.prob_out(y)).sum(-1)
            idx = t + 1
            hit = (stop == 0) & (((prob >= self.threshold) & (idx >= min_t)) | (idx >= max_t))
            stop.masked_fill_(hit, idx)
            if (idx % self.sync_every == 0 or idx == total) and bool((stop > 0).all()):
                break
        lens = stop.tolist()
        return spec_buf[:, : max(lens)], lens


def _grow(x: torch.Tensor, cap: int, dim: int) -> torch.Tensor:
    import torch

    shape = list(x.shape)
    shape[dim] = cap
    out = torch.zeros(shape, device=x.device, dtype=x.dtype)
    out.narrow(dim, 0, x.shape[dim]).copy_(x)
    return out


def _retime(mel: torch.Tensor, frames: list[int], speeds: list[float]) -> tuple[torch.Tensor, list[int]]:
    """Change each item's duration by 1/speed: linear interpolation of its log-mel frames (pitch kept)."""
    import torch
    import torch.nn.functional as F

    items, new = [], []
    for i, (n, s) in enumerate(zip(frames, speeds, strict=True)):
        x = mel[i, :n]
        if s != 1.0:
            size = max(1, round(n / s))
            x = F.interpolate(x.T.unsqueeze(0), size=size, mode="linear", align_corners=False)[0].T
        items.append(x)
        new.append(x.shape[0])
    out = torch.zeros(len(items), max(new), mel.shape[-1], device=mel.device, dtype=mel.dtype)
    for i, x in enumerate(items):
        out[i, : x.shape[0]] = x
    return out, new
