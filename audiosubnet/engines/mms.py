"""MMS-TTS voices (VITS) through transformers: `facebook/mms-tts-<iso639-3>` and any VITS folder.

Model ids: `mms:facebook/mms-tts-eng` (the default), `mms:facebook/mms-tts-fra`, `hf:facebook/mms-tts-deu`,
or a local folder holding config.json (model_type "vits") + model.safetensors + vocab.json.

Synthesis is our own batched VITS inference over the model's modules (text encoder, duration
predictor, flow, HiFi-GAN), not `VitsModel.forward`, so that:
- each item's noise comes from its own seed (per-item generators), so an item's audio is the
  same alone or in a batch, and the same seed gives the same audio;
- the HiFi-GAN decoder masks the padding before every convolution (`hifigan_forward`), so
  padding never leaks into the end of a shorter item;
- the prior is expanded with `searchsorted` + `gather` instead of a (batch, frames, tokens)
  matrix product, durations stay fp32 (fp16 cannot count frames past 2048), and there is one
  host sync per batch (the output length).

The base class and the helpers shared with speecht5 and bark are in `hf.py`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SynthesisRequest
from audiosubnet.engines.hf import (
    HFSpeechEngine,
    batch_bucket,
    frame_mask,
    hifigan_forward,
    length_sorted_chunks,
    padded_ids,
    request_seed,
    round_up,
    strip_weight_norm,
)
from audiosubnet.errors import DependencyError, EngineError, InputError

# On CUDA, token and frame counts are padded up to these multiples (masked, so the audio is unchanged):
# a bounded set of shapes, each paying cuDNN's plan building once (hf.batch_bucket).
TOKEN_BUCKET = 32
FRAME_BUCKET = 64  # 64 frames of 256 samples: about 1 s at 16 kHz


# ---- MMS / VITS --------------------------------------------------------------------------------
class MmsEngine(HFSpeechEngine):
    name = "mms"
    description = "Meta MMS-TTS (VITS) through transformers; 1,100+ languages by id"
    default_model = "facebook/mms-tts-eng"
    hf_prefixes = ("facebook/mms-tts",)
    hf_model_types = ("vits",)
    license = "transformers Apache-2.0; MMS-TTS weights CC-BY-NC-4.0 (non-commercial)"
    known_models = ("facebook/mms-tts-eng", "facebook/mms-tts-fra", "facebook/mms-tts-deu", "facebook/mms-tts-spa")
    known_bytes = {m: 145 * 2**20 for m in known_models}  # 36M parameters

    #: items per forward pass. On CPU one at a time: batching VITS there is ~2x slower (HiFi-GAN
    #: dominates and padding only adds work); on CUDA a batch fills the GPU.
    cpu_batch: ClassVar[int] = 1
    cuda_batch: ClassVar[int] = 64

    def __init__(self, model: str | None = None):
        super().__init__(model)
        self._model = self._tokenizer = self._uroman = self._normalizer = None
        self.forward_batch = self.cpu_batch  # set per device in setup(); tests may change it

    # ---- capabilities -----------------------------------------------------------------------
    @property
    def language(self) -> str:
        """ISO 639-3 code: the tokenizer's `language`, else the repo name (mms-tts-xxx), else "und"."""
        lang = getattr(self._tokenizer, "language", None)
        if lang:
            return str(lang)
        m = re.search(r"mms-tts-([a-z]{3})", self.model.lower())
        return m.group(1) if m else "und"

    def _capabilities(self) -> Capabilities:
        cfg = self.read_config() if not self.loaded else self._model.config.to_dict()
        speakers = int(cfg.get("num_speakers", 1) or 1)
        voices = tuple(str(i) for i in range(speakers)) if speakers > 1 else ("default",)
        cuda = self.device.startswith("cuda")
        return Capabilities(
            sample_rate=int(cfg.get("sampling_rate", 16000)),
            max_text_chars=1000,
            batching=cuda,
            max_batch=self.cuda_batch if cuda else 8,
            voices=voices,
            default_voice=voices[0],
            devices=("cpu", "cuda"),
            seedable=True,
            languages=(self.language[:3],),
        )

    # ---- load -------------------------------------------------------------------------------
    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        with self._lock:
            folder = self.local(self.model, download=True)  # first: a missing model fails before imports
            tdtype = self.torch_setup(device, dtype)
            import torch
            from transformers import VitsModel, VitsTokenizer

            try:
                tok = VitsTokenizer.from_pretrained(folder)
                model = VitsModel.from_pretrained(folder, dtype=torch.float32)  # fold weight norm in fp32
            except Exception as e:
                raise EngineError(f"cannot load {self.model_id} from {folder}: {e}") from e
            model.posterior_encoder = None  # training only
            strip_weight_norm(model)
            model.to(device=device, dtype=tdtype).eval()
            if tdtype != torch.float32:  # the duration flows' splines need fp32; they are tiny
                model.duration_predictor.float()
            if tok.phonemize:
                try:
                    import phonemizer  # noqa: F401
                except ImportError as e:
                    raise EngineError(f"{self.model_id} reads phonemes: it needs the 'phonemizer' package",
                                      hint="pip install phonemizer (and espeak-ng)") from e
            self._model, self._tokenizer = model, tok
            self.forward_batch = self.cuda_batch if device.startswith("cuda") else self.cpu_batch
            self.bucket_shapes = device.startswith("cuda")
            self._caps = None
            self.loaded = True

    def modules(self) -> list:
        return [self._model]

    def drop(self) -> None:
        self._model = self._tokenizer = None

    # ---- text -------------------------------------------------------------------------------
    def _prepare(self, text: str) -> str:
        if self.language.startswith("eng"):
            if self._normalizer is None:
                from transformers.models.speecht5.number_normalizer import EnglishNumberNormalizer

                self._normalizer = EnglishNumberNormalizer()
            text = self._normalizer(text)
        tok = self._tokenizer
        if tok.is_uroman and re.search(r"[^\x00-\x7F]", text):
            if self._uroman is None:
                try:
                    import uroman
                except ImportError as e:
                    raise DependencyError("uroman", "hf", f"{self.model_id} (text in a non-Latin script)") from e
                self._uroman = uroman.Uroman()
            text = self._uroman.romanize_string(text)
        return text

    def _token_ids(self, text: str) -> list[int]:
        ids = self.cached_ids(text, self._tokenize)
        if len(ids) <= int(self._tokenizer.add_blank):
            raise InputError(f"nothing in the text is pronounceable by {self.model_id}")
        return ids

    def _tokenize(self, text: str) -> list[int]:
        text = self._prepare(text)
        fast = vits_ids_fast(self._tokenizer, text)
        return fast if fast is not None else self._tokenizer(text)["input_ids"]

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        if self.loaded:
            self._token_ids(request.text)

    # ---- synthesis --------------------------------------------------------------------------
    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        with self._lock, torch.inference_mode():
            ids = [self._token_ids(r.text) for r in requests]
            out: list[Audio | None] = [None] * len(requests)
            for chunk in length_sorted_chunks([len(x) for x in ids], self.forward_batch):
                waves = self._forward([ids[i] for i in chunk], [requests[i] for i in chunk])
                for i, w in zip(chunk, waves, strict=True):
                    out[i] = Audio(w, int(self._model.config.sampling_rate))
            return out  # type: ignore[return-value]

    def _forward(self, ids: list[list[int]], requests: list[SynthesisRequest]) -> list[np.ndarray]:
        """One batched VITS pass; returns float32 waveforms trimmed to each item's length."""
        import torch

        m, cfg, dev = self._model, self._model.config, torch.device(self.device)
        dt = m.text_encoder.embed_tokens.weight.dtype
        n_real = len(ids)
        bucketed = self.bucket_shapes  # shape buckets on CUDA: see hf.batch_bucket
        if bucketed and batch_bucket(n_real) > n_real:  # filler rows repeat the last item; dropped below
            extra = batch_bucket(n_real) - n_real
            ids, requests = ids + [ids[-1]] * extra, list(requests) + [requests[-1]] * extra
        batch = len(ids)
        in_lens = [len(x) for x in ids]
        t_in = round_up(max(in_lens), TOKEN_BUCKET) if bucketed else max(in_lens)
        pad_id = self._tokenizer.pad_token_id or 0
        id_t, mask_t = padded_ids(ids, pad_id, dev, length=t_in)
        gens = [torch.Generator(device=dev).manual_seed(request_seed(r)) for r in requests]
        rates = torch.tensor([m.speaking_rate * r.speed for r in requests], dtype=torch.float32)

        speaker = None
        if cfg.num_speakers > 1:
            sid = [int(r.voice) if r.voice and r.voice.isdigit() else 0 for r in requests]
            speaker = m.embed_speaker(torch.tensor(sid, device=dev)).unsqueeze(-1)

        pad = mask_t.unsqueeze(-1).to(dt)
        enc = m.text_encoder(input_ids=id_t, padding_mask=pad, attention_mask=mask_t, return_dict=True)
        hidden = enc.last_hidden_state.transpose(1, 2)
        pad_t = pad.transpose(1, 2)

        # durations, in fp32
        pad32, hidden32 = pad_t.float(), hidden.float()
        spk32 = speaker.float() if speaker is not None else None
        if cfg.use_stochastic_duration_prediction:
            noise = torch.zeros(batch, 2, t_in, device=dev)
            for i, g in enumerate(gens):
                noise[i, :, : in_lens[i]] = torch.randn(2, in_lens[i], generator=g, device=dev)
            log_dur = _sdp_reverse(m.duration_predictor, hidden32, pad32, spk32, noise * m.noise_scale_duration)
        else:
            log_dur = m.duration_predictor(hidden32, pad32, spk32).float()
        scale = (1.0 / rates).to(dev).view(batch, 1, 1)
        dur = torch.ceil(torch.exp(log_dur) * pad32 * scale)[:, 0]  # (batch, tokens)
        frames_t = torch.clamp_min(dur.sum(-1), 1).long()
        frames = frames_t.tolist()  # the one host sync of the pass
        t_out = round_up(max(frames), FRAME_BUCKET) if bucketed else max(frames)

        # expand the prior: frame j belongs to the first token whose cumulative duration exceeds j
        cum = dur.cumsum(-1)
        pos = torch.arange(t_out, device=dev, dtype=cum.dtype).expand(batch, t_out).contiguous()
        token = torch.searchsorted(cum, pos, right=True).clamp_(max=t_in - 1)
        gather = token.unsqueeze(-1).expand(-1, -1, enc.prior_means.shape[-1])
        means = torch.gather(enc.prior_means, 1, gather).transpose(1, 2)
        log_var = torch.gather(enc.prior_log_variances, 1, gather).transpose(1, 2)
        out_mask = frame_mask(frames_t, t_out, dt)
        eps = torch.zeros(batch, means.shape[1], t_out, device=dev)
        for i, g in enumerate(gens):
            eps[i, :, : frames[i]] = torch.randn(means.shape[1], frames[i], generator=g, device=dev)
        z = (means + eps.to(dt) * torch.exp(log_var) * m.noise_scale) * out_mask
        latents = m.flow(z, out_mask, speaker, reverse=True)
        wave, lens = hifigan_forward(m.decoder, latents * out_mask, frames, cond=speaker)
        host = wave[:n_real].float().cpu().numpy()
        return [np.ascontiguousarray(host[i, : lens[i]]) for i in range(n_real)]


def vits_ids_fast(tok, text: str) -> list[int] | None:
    """VitsTokenizer's ids for the common MMS case (normalize, no phonemes, one-character vocabulary),
    in O(len) instead of its O(len x vocab) normalisation loop; None when the case does not apply."""
    enc = tok.encoder
    if not tok.normalize or tok.phonemize or tok.language == "ron" or "<" in text:
        return None
    if any(len(k) != 1 for k in enc if not (k.startswith("<") and k.endswith(">"))):
        return None
    text = "".join(c if c in enc else c.lower() for c in text)
    ids = [enc[c] for c in "".join(c for c in text if c in enc).strip()]
    if not tok.add_blank or not ids:
        return ids
    out = [0] * (2 * len(ids) + 1)
    out[1::2] = ids
    return out


def _sdp_reverse(sdp, hidden, pad, cond, noise):
    """VitsStochasticDurationPredictor in reverse, with the noise given (drawn per item)."""
    import torch

    x = sdp.conv_pre(hidden)
    if cond is not None and getattr(sdp, "cond", None) is not None:
        x = x + sdp.cond(cond)
    x = sdp.conv_dds(x, pad)
    x = sdp.conv_proj(x) * pad
    flows = list(reversed(sdp.flows))
    flows = flows[:-2] + [flows[-1]]  # as transformers: the last-but-one flow is unused in reverse
    z = noise
    for flow in flows:
        z = torch.flip(z, [1])
        z, _ = flow(z, pad, global_conditioning=x, reverse=True)
    return z[:, :1]
