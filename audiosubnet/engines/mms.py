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

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SynthesisRequest, request_seed
from audiosubnet.engines.hf import (
    HFSpeechEngine,
    batch_bucket,
    frame_mask,
    hifigan_forward,
    hifigan_lengths,
    length_sorted_chunks,
    padded_ids,
    round_up,
    strip_weight_norm,
)
from audiosubnet.errors import DependencyError, EngineError, InputError
from audiosubnet.runtime.cuda_graphs import GraphCache

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

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
    #: CUDA graphs for the waveform stage only up to this many frames in a batch (items x frames; 64 items of
    #: 8 s, about 4 GiB of graph memory at fp16): beyond it the kernels, not their launches, take the time, and
    #: a graph's memory pool would double the peak memory of the largest batches.
    graph_max_frames: ClassVar[int] = 64 * 512
    #: on CUDA, warm-up captures every single-request frame bucket up to this much speech
    warm_graph_seconds: ClassVar[float] = 40.0

    def __init__(self, model: str | None = None):
        super().__init__(model)
        # loaded third-party objects (transformers VITS, uroman): typed at that boundary as Any
        self._model: Any = None
        self._tokenizer: Any = None
        self._uroman: Any = None
        self._normalizer: Any = None
        self._graphs: dict[str, GraphCache] | None = None  # CUDA only: one GraphCache per stage of _forward
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

    def scripts_for(self, request: SynthesisRequest | None = None) -> tuple[str, ...] | None:
        """A uroman model romanises any script first: no limit; the others read their language's scripts."""
        uroman = getattr(self._tokenizer, "is_uroman", None)
        if uroman is None:  # not loaded: what its tokenizer_config.json says
            try:
                folder = self.local(self.model, download=False)
                uroman = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("is_uroman")
            except Exception:
                uroman = None
        return None if uroman else super().scripts_for(request)

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

            # fp32: weight norm folds in fp32
            tok, model = self.load_pretrained(folder, VitsTokenizer, VitsModel, torch.float32)
            model.posterior_encoder = None  # training only: dropped on purpose
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
            self._graphs = self._graph_caches() if device.startswith("cuda") else None
            self._caps = None
            self.loaded = True

    def modules(self) -> list[torch.nn.Module]:
        return [self._model]

    def drop(self) -> None:
        self._model = self._tokenizer = self._graphs = None

    def cuda_graph_stats(self) -> dict[str, Any]:
        """On CUDA: how many shapes each stage captured, replayed, ran eagerly."""
        return {name: g.stats for name, g in (self._graphs or {}).items()}

    def _graph_caches(self) -> dict[str, GraphCache]:
        name, flow = self.model_id, self._model.config.flow_size
        tokens, frames = self.single_buckets()  # kept besides the LRU graphs of batched shapes
        return {"durations": GraphCache(self._durations, name=f"{name} durations", size=32 + len(tokens)),
                "waveform": GraphCache(self._waveform, name=f"{name} waveform", size=32 + len(frames),
                                       max_numel=self.graph_max_frames * flow)}

    # ---- text -------------------------------------------------------------------------------
    def _prepare(self, text: str) -> str:
        if self.language.startswith("eng"):
            if self._normalizer is None:
                from transformers.models.speecht5.number_normalizer import EnglishNumberNormalizer

                self._normalizer = EnglishNumberNormalizer()  # type: ignore[no-untyped-call]  # unannotated in transformers
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
        """One batched VITS pass; returns float32 waveforms trimmed to each item's length.

        Two stages of tensors in, tensors out (`_durations`, then `_waveform`), around the pass's one host
        sync (the frame count). On CUDA each stage runs through a GraphCache: one graph per shape bucket."""
        import torch

        m, cfg, dev = self._model, self._model.config, torch.device(self.device)
        n_real = len(ids)
        bucketed = self.bucket_shapes  # shape buckets on CUDA: see hf.batch_bucket
        if bucketed and batch_bucket(n_real) > n_real:  # filler rows repeat the last item; dropped below
            extra = batch_bucket(n_real) - n_real
            ids, requests = ids + [ids[-1]] * extra, list(requests) + [requests[-1]] * extra
        batch = len(ids)
        in_lens = [len(x) for x in ids]
        t_in = round_up(max(in_lens), TOKEN_BUCKET) if bucketed else max(in_lens)
        gens = [torch.Generator(device=dev).manual_seed(request_seed(r)) for r in requests]
        stage_in = self._duration_inputs(ids, requests, t_in, gens)
        stage = self._graphs or {}
        sid = list(stage_in[4:])
        dur, means, log_var, frames_t = stage.get("durations", self._durations)(*stage_in)
        frames = frames_t.tolist()  # the one host sync of the pass
        t_out = round_up(max(frames), FRAME_BUCKET) if bucketed else max(frames)
        eps = torch.zeros(batch, cfg.flow_size, t_out, device=dev)
        for i, g in enumerate(gens):
            eps[i, :, : frames[i]] = torch.randn(cfg.flow_size, frames[i], generator=g, device=dev)
        eps *= m.noise_scale
        z = self._expand(dur, means, log_var, frames_t, eps)
        if "waveform" in stage:
            (wave,) = stage["waveform"](z, frames_t, *sid)
        else:  # eager: host lengths let HiFi-GAN skip the masks when nothing is padded (the CPU path)
            (wave,) = self._waveform(z, frames_t, sid[0] if sid else None, frames=frames)
        lens = hifigan_lengths(m.decoder, frames)
        host = wave[:n_real].float().cpu().numpy()
        return [np.ascontiguousarray(host[i, : lens[i]]) for i in range(n_real)]

    def _duration_inputs(self, ids: list[list[int]], requests: list[SynthesisRequest], t_in: int,
                         gens: list[torch.Generator] | None) -> tuple[torch.Tensor, ...]:
        """Stage 1's tensors: ids and mask padded to `t_in`, the duration noise (each item's own generator;
        `gens` None: zeros, for a warm-up capture), the speed scale, and speaker ids for multi-speaker models."""
        import torch

        m, cfg, dev = self._model, self._model.config, torch.device(self.device)
        batch = len(ids)
        in_lens = [len(x) for x in ids]
        pad_id = self._tokenizer.pad_token_id or 0
        id_t, mask_t = padded_ids(ids, pad_id, dev, length=t_in)
        rates = torch.tensor([m.speaking_rate * r.speed for r in requests], dtype=torch.float32)
        scale = (1.0 / rates).to(dev).view(batch, 1, 1)
        noise = torch.zeros(batch, 2, t_in, device=dev)
        if cfg.use_stochastic_duration_prediction and gens is not None:
            for i, g in enumerate(gens):
                noise[i, :, : in_lens[i]] = torch.randn(2, in_lens[i], generator=g, device=dev)
            noise *= m.noise_scale_duration
        sid = []
        if cfg.num_speakers > 1:
            sid = [torch.tensor([int(r.voice) if r.voice and r.voice.isdigit() else 0 for r in requests], device=dev)]
        return (id_t, mask_t, noise, scale, *sid)

    def _durations(self, id_t: torch.Tensor, mask_t: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor,
                   sid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 1: text encoder and duration predictor -> (frames per token, prior means and log variances,
        frames per item). Durations in fp32: fp16 cannot count frames past 2048."""
        import torch

        m = self._model
        dt = m.text_encoder.embed_tokens.weight.dtype
        pad = mask_t.unsqueeze(-1).to(dt)
        # the 4-D additive mask transformers would build from mask_t, built here: its builder asks the host
        # whether anything is padded (a sync, which a graph cannot hold); keys past an item's end are masked
        batch, t_in = mask_t.shape
        keys = torch.zeros(batch, 1, 1, t_in, dtype=dt, device=mask_t.device)
        keys.masked_fill_(mask_t[:, None, None, :] == 0, torch.finfo(dt).min)
        enc = m.text_encoder(input_ids=id_t, padding_mask=pad, attention_mask=keys.expand(batch, 1, t_in, t_in),
                             return_dict=True)
        hidden32, pad32 = enc.last_hidden_state.transpose(1, 2).float(), pad.transpose(1, 2).float()
        spk32 = m.embed_speaker(sid).unsqueeze(-1).float() if sid is not None else None
        if m.config.use_stochastic_duration_prediction:
            log_dur = _sdp_reverse(m.duration_predictor, hidden32, pad32, spk32, noise)
        else:
            log_dur = m.duration_predictor(hidden32, pad32, spk32).float()
        dur = torch.ceil(torch.exp(log_dur) * pad32 * scale)[:, 0]  # (batch, tokens)
        frames_t = torch.clamp_min(dur.sum(-1), 1).long()
        return dur, enc.prior_means, enc.prior_log_variances, frames_t

    def _expand(self, dur: torch.Tensor, means_p: torch.Tensor, log_var_p: torch.Tensor, frames_t: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
        """Between the stages, eager on every device (a few kernels): the prior expanded to frames plus the
        (pre-scaled) noise, zero past each item's end -> z (batch, flow, frames). Kept out of the graphed
        waveform stage so that stage's shapes depend on the frame count alone (one graph per frame bucket)."""
        import torch

        dt = means_p.dtype
        batch, t_in = dur.shape
        t_out = eps.shape[-1]
        # frame j belongs to the first token whose cumulative duration exceeds j
        cum = dur.cumsum(-1)
        pos = torch.arange(t_out, device=dur.device, dtype=cum.dtype).expand(batch, t_out).contiguous()
        token = torch.searchsorted(cum, pos, right=True).clamp_(max=t_in - 1)
        gather = token.unsqueeze(-1).expand(-1, -1, means_p.shape[-1])
        means = torch.gather(means_p, 1, gather).transpose(1, 2)
        log_var = torch.gather(log_var_p, 1, gather).transpose(1, 2)
        return (means + eps.to(dt) * torch.exp(log_var)) * frame_mask(frames_t, t_out, dt)

    def _waveform(self, z: torch.Tensor, frames_t: torch.Tensor, sid: torch.Tensor | None = None,
                  frames: list[int] | None = None) -> tuple[torch.Tensor]:
        """Stage 2: the flow in reverse, then HiFi-GAN, on z (batch, flow, frames)."""
        m = self._model
        speaker = m.embed_speaker(sid).unsqueeze(-1) if sid is not None else None
        out_mask = frame_mask(frames_t, z.shape[-1], z.dtype)
        latents = m.flow(z, out_mask, speaker, reverse=True)
        wave, _ = hifigan_forward(m.decoder, latents * out_mask, frames if frames is not None else frames_t,
                                  cond=speaker)
        return (wave,)

    # ---- warm-up ----------------------------------------------------------------------------
    def warmup(self) -> None:
        """A short synthesis; on CUDA also every single-request shape bucket captured as a graph, so a fresh
        text (a validator's prompts are all new) replays a graph instead of building cuDNN plans and running
        eagerly (about 180 ms instead of 45 ms for 30 s of speech on an H100)."""
        super().warmup()
        if self._graphs:
            self.capture_single_buckets()

    def single_buckets(self) -> tuple[list[int], list[int]]:
        """Token and frame buckets of one request: up to the longest text taken, up to `warm_graph_seconds`."""
        hop = math.prod(self._model.config.upsample_rates)
        max_tokens = self.capabilities.max_text_chars * (2 if self._tokenizer.add_blank else 1) + 1
        max_frames = int(self.warm_graph_seconds * self._model.config.sampling_rate / hop)
        return (list(range(TOKEN_BUCKET, round_up(max_tokens, TOKEN_BUCKET) + 1, TOKEN_BUCKET)),
                list(range(FRAME_BUCKET, round_up(max_frames, FRAME_BUCKET) + 1, FRAME_BUCKET)))

    def capture_single_buckets(self) -> dict[str, int]:
        """Capture (and keep: never evicted) a graph of each stage for every single-request shape bucket."""
        import torch

        with self._lock, torch.inference_mode():
            graphs, cfg, dev = self._graphs or {}, self._model.config, torch.device(self.device)
            dt = self._model.text_encoder.embed_tokens.weight.dtype
            t0, done = time.perf_counter(), {"durations": 0, "waveform": 0}
            tokens, frames = self.single_buckets()
            req = [SynthesisRequest("warm", voice=self.capabilities.default_voice)]
            for t_in in tokens if "durations" in graphs else ():
                if graphs["durations"].capture(*self._duration_inputs([[0] * t_in], req, t_in, None)):
                    done["durations"] += 1
            sid = [torch.zeros(1, dtype=torch.long, device=dev)] if cfg.num_speakers > 1 else []
            for t_out in frames if "waveform" in graphs else ():
                z = torch.zeros(1, cfg.flow_size, t_out, dtype=dt, device=dev)
                if graphs["waveform"].capture(z, torch.full((1,), t_out, dtype=torch.long, device=dev), *sid):
                    done["waveform"] += 1
            log.info("%s: captured %d + %d single-request CUDA graphs in %.1f s", self.model_id,
                     done["durations"], done["waveform"], time.perf_counter() - t0)
            return done


def vits_ids_fast(tok: Any, text: str) -> list[int] | None:
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


def _sdp_reverse(sdp: Any, hidden: torch.Tensor, pad: torch.Tensor, cond: torch.Tensor | None,
                 noise: torch.Tensor) -> torch.Tensor:
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
        if hasattr(flow, "num_bins"):  # VitsConvFlow
            z = _conv_flow_reverse(flow, z, pad, x)
        else:  # VitsElementwiseAffine
            z, _ = flow(z, pad, global_conditioning=x, reverse=True)
    return z[:, :1]


def _conv_flow_reverse(flow: Any, z: torch.Tensor, pad: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """VitsConvFlow.forward(reverse=True), with the spline below: no host syncs, no data-dependent shapes."""
    import torch

    first, second = torch.split(z, [flow.half_channels] * 2, dim=1)
    h = flow.conv_pre(first)
    h = flow.conv_dds(h, pad, cond)
    h = flow.conv_proj(h) * pad
    batch, channels, length = first.shape
    h = h.reshape(batch, channels, -1, length).permute(0, 1, 3, 2)
    k, root = flow.num_bins, math.sqrt(flow.filter_channels)
    second = spline_reverse(second, h[..., :k] / root, h[..., k: 2 * k] / root, h[..., 2 * k:], flow.tail_bound)
    return torch.cat([first, second], dim=1) * pad


def spline_reverse(inputs: torch.Tensor, widths_u: torch.Tensor, heights_u: torch.Tensor, derivs_u: torch.Tensor,
                   tail_bound: float,
                   min_width: float = 1e-3, min_height: float = 1e-3, min_deriv: float = 1e-3) -> torch.Tensor:
    """The inverse of transformers' `_unconstrained_rational_quadratic_spline` (identity outside the tail
    bound), computed on every element and selected with `where`. transformers gathers the elements inside
    the bound with a boolean mask (a data-dependent shape) and checks their range and discriminant on the
    host (formatting the whole tensor into the message each call): three host syncs per flow, and nothing a
    CUDA graph can hold. Same arithmetic per element, so the same values."""
    import torch
    import torch.nn.functional as F

    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    x = inputs.clamp(-tail_bound, tail_bound)
    bins = widths_u.shape[-1]
    derivs = min_deriv + F.softplus(F.pad(derivs_u, (1, 1), value=math.log(math.exp(1 - min_deriv) - 1)))

    def knots(unnormalized: torch.Tensor, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
        # (cumulative positions with both ends exact, sizes)
        sizes = min_size + (1 - min_size * bins) * F.softmax(unnormalized, dim=-1)
        cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0) * (2 * tail_bound) - tail_bound
        cum[..., 0], cum[..., -1] = -tail_bound, tail_bound
        return cum, cum[..., 1:] - cum[..., :-1]

    cumwidths, widths = knots(widths_u, min_width)
    cumheights, heights = knots(heights_u, min_height)
    cumheights[..., -1] += 1e-6  # as transformers (its bin locations alias the heights' knots)
    idx = (torch.sum(x[..., None] >= cumheights, dim=-1) - 1).unsqueeze(-1)

    def at(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, idx)[..., 0]

    in_cumwidths, in_widths, in_cumheights, in_heights = at(cumwidths), at(widths), at(cumheights), at(heights)
    in_delta = at(heights / widths)
    in_d, in_d1 = at(derivs), derivs[..., 1:].gather(-1, idx)[..., 0]
    i1 = in_d + in_d1 - 2 * in_delta
    i2 = x - in_cumheights
    i3 = i2 * i1
    a = in_heights * (in_delta - in_d) + i3
    b = in_heights * in_d - i3
    c = -in_delta * i2
    root = (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))
    return torch.where(inside, root * in_widths + in_cumwidths, inputs)
