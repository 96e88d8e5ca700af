"""MusicGen (text-to-music) through transformers: `musicgen:facebook/musicgen-small|medium|large` or a folder.

Model ids: `musicgen:facebook/musicgen-small` (the default), `musicgen:facebook/musicgen-medium`,
`hf:facebook/musicgen-large`, or a local folder holding config.json (model_type "musicgen"), the weights
and a T5 tokenizer.

Generation settings are always set explicitly (a model's saved generation config may be greedy with
`max_length` 20): the length comes from the request (`max_new_tokens` = frame rate x seconds + the codebook
delay), sampling is top-k (250) at temperature 1 with classifier-free guidance (scale 3), as MusicGen was
published. Sampling is ours, not `generate`'s: a logits processor placed after the guidance draws each
item's tokens from that item's own seeded generator, so the same seed gives the same music whether the
request runs alone or in a batch (up to floating-point differences of batched kernels), and `generate`
only takes the argmax of the one token left. A batch generates for its longest item; items are grouped by
length (longest first) and each clip is cut to its own length. Output: mono at the codec's rate (32 kHz).

On CUDA (`fast="auto"`) batches run through `musicgen_fast.FastMusicgen` instead of `generate`: a static KV cache
and the decode step replayed as a CUDA graph, the same guidance and top-k, each item's noise from its own seed.
Runners are kept per batch bucket (1-8, then multiples of 8; at most `max_runners` = 2, least recently used dropped),
sized to steps rounded up to 5 s and prompts to 32 tokens, so a steady stream of requests replays a few graphs.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SynthesisRequest, request_seed
from audiosubnet.engines.hf import HFSpeechEngine, batch_bucket, padded_ids, round_up
from audiosubnet.engines.music import (
    MAX_DURATION_S,
    MAX_PROMPT_CHARS,
    MusicRequest,
    as_music_request,
    check_music_request,
    duration_chunks,
    trim,
)

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessorList

    from audiosubnet.engines.musicgen_fast import FastMusicgen

log = logging.getLogger(__name__)

GUIDANCE_SCALE = 3.0
TOP_K = 250
TEMPERATURE = 1.0
STEP_BUCKET = 250  # fast path: decoder capacity in steps of 5 s
TEXT_BUCKET = 32  # fast path: prompt tokens


class MusicgenEngine(HFSpeechEngine):
    name = "musicgen"
    description = "Meta MusicGen text-to-music through transformers (32 kHz mono)"
    default_model = "facebook/musicgen-small"
    hf_prefixes = ("facebook/musicgen",)
    hf_model_types = ("musicgen",)
    license = "transformers Apache-2.0; MusicGen weights CC-BY-NC-4.0 (non-commercial)"
    known_models = ("facebook/musicgen-small", "facebook/musicgen-medium", "facebook/musicgen-large")
    # fp32 bytes (parameters x 4): 300M / 1.5B / 3.3B parameters
    known_bytes = {"facebook/musicgen-small": 1_200 * 2**20, "facebook/musicgen-medium": 6_100 * 2**20,
                   "facebook/musicgen-large": 13_000 * 2**20}
    allow_patterns = ("*.json", "*.txt", "*.model", "*.safetensors")

    cpu_batch: ClassVar[int] = 4
    cuda_batch: ClassVar[int] = 32
    max_runners: ClassVar[int] = 2  # each holds a KV cache: up to 26 GiB for 32 x 30 s of musicgen-medium in bf16

    def __init__(self, model: str | None = None):
        super().__init__(model)
        # loaded transformers objects: typed at that boundary as Any
        self._model: Any = None
        self._tokenizer: Any = None
        self.guidance_scale = GUIDANCE_SCALE
        self.top_k = TOP_K
        self.temperature = TEMPERATURE
        self.forward_batch = self.cpu_batch
        self.fast = "auto"  # auto (CUDA) | on | off: the static-cache graph decoder instead of generate
        self._runners: dict[int, FastMusicgen] = {}  # batch bucket -> FastMusicgen (LRU order)

    # ---- capabilities -----------------------------------------------------------------------
    def _capabilities(self) -> Capabilities:
        cfg = self.read_config() if not self.loaded else self._model.config.to_dict()
        sr = int((cfg.get("audio_encoder") or {}).get("sampling_rate", 32000))
        cuda = self.device.startswith("cuda")
        return Capabilities(sample_rate=sr, max_text_chars=MAX_PROMPT_CHARS, batching=True,
                            max_batch=self.cuda_batch if cuda else self.cpu_batch, voices=(), default_voice=None,
                            devices=("cpu", "cuda"), tts=False, seedable=True, music=True,
                            max_duration_s=MAX_DURATION_S)

    @property
    def frame_rate(self) -> float:
        enc = self._model.config.audio_encoder
        rate = getattr(enc, "frame_rate", None)
        return float(rate) if rate else enc.sampling_rate / math.prod(enc.upsampling_ratios)

    @property
    def num_codebooks(self) -> int:
        return int(self._model.config.decoder.num_codebooks)

    # ---- load -------------------------------------------------------------------------------
    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        with self._lock:
            folder = self.local(self.model, download=True)  # first: a missing model fails before imports
            tdtype = self.torch_setup(device, dtype)
            from transformers import AutoTokenizer, MusicgenForConditionalGeneration

            tok, model = self.load_pretrained(folder, AutoTokenizer, MusicgenForConditionalGeneration, tdtype)
            model.to(device=device).eval()
            model.audio_encoder.float()  # EnCodec (LSTMs, small) in fp32: not every LSTM kernel takes bf16
            self._model, self._tokenizer = model, tok
            self.forward_batch = self.cuda_batch if device.startswith("cuda") else self.cpu_batch
            self.loaded = True

    def modules(self) -> list[torch.nn.Module]:
        return [self._model]

    def extra_tensors(self) -> list[torch.Tensor | None]:
        return [t for r in self._runners.values() for t in (r.kv_cache, r.cross_k, r.cross_v, r.noise)]

    def drop(self) -> None:
        self._model = self._tokenizer = None
        self._runners.clear()

    # ---- requests ---------------------------------------------------------------------------
    def check(self, request: SynthesisRequest) -> None:
        check_music_request(request, self.model_id)

    def warmup(self) -> None:
        self._synthesize([MusicRequest("warm up", duration_s=0.5, seed=0)])

    def max_new_tokens(self, duration_s: float) -> int:
        """Decoder steps for `duration_s` seconds: one frame per step, plus the codebooks' delay."""
        return int(math.ceil(duration_s * self.frame_rate)) + self.num_codebooks - 1

    # ---- synthesis --------------------------------------------------------------------------
    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        reqs = [as_music_request(r) for r in requests]
        out: list[Audio | None] = [None] * len(reqs)
        with self._lock, torch.inference_mode():
            for chunk in duration_chunks(reqs, self.forward_batch):
                waves = self.generate([reqs[i] for i in chunk])
                for i, w in zip(chunk, waves, strict=True):
                    out[i] = Audio(w, self.sample_rate)
        return out  # type: ignore[return-value]

    @property
    def sample_rate(self) -> int:
        return int(self._model.config.audio_encoder.sampling_rate)

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self._tokenizer
        ids = [self.cached_ids(p, lambda t: tok(t)["input_ids"]) for p in prompts]
        return padded_ids(ids, tok.pad_token_id or 0, self._model.device)

    def use_fast(self) -> bool:
        return self.fast == "on" or (self.fast == "auto" and self.device.startswith("cuda"))

    def runner(self, n: int, steps: int, text_len: int) -> FastMusicgen:
        """A FastMusicgen with room for n prompts of `text_len` tokens and `steps` steps (kept per batch bucket)."""
        from audiosubnet.engines.musicgen_fast import FastMusicgen

        bucket = batch_bucket(n) if self.device.startswith("cuda") else n
        r = self._runners.pop(bucket, None)
        if r is None or r.steps < steps or text_len > r.S:
            old_steps, old_text = (r.steps, r.S) if r is not None else (0, 0)
            r = None  # free the smaller runner's buffers before making the new one
            r = FastMusicgen(self._model, bucket, max(round_up(steps, STEP_BUCKET), old_steps),
                             max(round_up(text_len, TEXT_BUCKET), old_text), guidance_scale=self.guidance_scale,
                             top_k=self.top_k, temperature=self.temperature)
        self._runners[bucket] = r
        while len(self._runners) > self.max_runners:
            self._runners.pop(next(iter(self._runners)))
        return r

    def generate(self, reqs: list[MusicRequest]) -> list[np.ndarray]:
        """One batched `generate` call (or one fast-path run); float32 waveforms cut to each item's length."""
        import torch

        ids, mask = self.encode_prompts([r.text for r in reqs])
        dev = self._model.device
        gens = [torch.Generator(device=dev).manual_seed(request_seed(r)) for r in reqs]
        steps = self.max_new_tokens(max(r.duration_s for r in reqs))
        sr = self.sample_rate
        if self.use_fast():
            r = self.runner(len(reqs), steps, ids.shape[1])
            audio = r.audio(r.decode(ids, mask, steps, gens))
            host = audio.float().cpu().numpy()
            return [np.ascontiguousarray(np.nan_to_num(trim(host[i], sr, q.duration_s))) for i, q in enumerate(reqs)]
        sampler = SeededSampler(gens, self.num_codebooks, self.top_k, self.temperature)
        audio = self._model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps,
            do_sample=False, guidance_scale=self.guidance_scale if self.guidance_scale > 1 else None,
            logits_processor=SamplerLast([sampler]), num_beams=1,
        )
        host = audio[:, 0].float().cpu().numpy()
        return [np.ascontiguousarray(np.nan_to_num(trim(host[i], sr, r.duration_s))) for i, r in enumerate(reqs)]


class SeededSampler:
    """Top-k + temperature sampling with one torch.Generator per batch item, as a logits processor: it
    returns scores that are -inf everywhere but at the drawn token, so greedy decoding takes the draw.

    Rows of MusicGen's scores are item-major (item b, codebook k -> row b * num_codebooks + k)."""

    def __init__(self, generators: list[torch.Generator], num_codebooks: int, top_k: int, temperature: float):
        self.generators, self.k, self.top_k, self.temperature = generators, num_codebooks, top_k, temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        s = scores.float() / max(self.temperature, 1e-5)
        vocab = s.shape[-1]
        if 0 < self.top_k < vocab:
            kth = torch.topk(s, self.top_k, dim=-1).values[..., -1:]
            s = s.masked_fill(s < kth, float("-inf"))
        probs = torch.softmax(s, dim=-1).view(len(self.generators), self.k, vocab)
        picks = torch.cat([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks.view(-1, 1), 0.0)


@functools.cache
def _sampler_last() -> type[LogitsProcessorList]:
    from transformers import LogitsProcessorList

    class SamplerLast(LogitsProcessorList):
        """Keeps our sampler last: MusicGen's `generate` appends its classifier-free guidance processor to the
        caller's list, and the draw must see the guided scores."""

        def append(self, item: Any) -> None:
            self.insert(max(0, len(self) - 1), item)

    return SamplerLast


def SamplerLast(processors: list[Any]) -> LogitsProcessorList:  # noqa: N802 - the class is made on first use (transformers imported lazily)
    return _sampler_last()(processors)
