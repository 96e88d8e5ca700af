"""A faster MusicGen decode loop: static KV cache, classifier-free guidance and top-k sampling in one step
function, replayed as a CUDA graph (fast-musicgen's recipe), over the weights of transformers'
`MusicgenForConditionalGeneration` (mono models).

transformers' `generate` is launch-bound for MusicGen: every step re-enters Python for 24-48 decoder layers,
four heads, the logits processors and the cache bookkeeping. Here one step is a fixed sequence of kernels on
fixed buffers:

    tokens at `pos` (rows x codebooks) -> summed codebook embeddings + sinusoidal position
    -> per layer: self-attention over the static cache (written at `pos`), cross-attention over the text's
       keys/values (computed once per batch), MLP -> final norm -> the codebooks' heads
    -> guidance (cond + (cond - uncond) x scale) -> temperature -> top-k -> Gumbel-max draw
    -> the codebook delay pattern (forced pads) -> tokens at `pos + 1`; `pos += 1`

so on CUDA the whole step is captured once and replayed `steps` times with no host work in between. On the CPU
it runs eagerly (for tests and smoke runs). With `top_k=1` the loop is greedy and reproduces `generate`'s greedy
tokens exactly (tests/unit/engines/test_musicgen_fast.py).

Sampling is a Gumbel-max draw whose uniform noise is drawn outside the graph, `chunk` steps at a time, from one
torch.Generator per item: an item's music depends on its own seed, not on its batch (up to floating-point
differences of batched kernels). One instance has a capacity (batch rows, steps, text tokens) and serves any
shorter run: a smaller batch is padded with copies of its last prompt, fewer steps just stop early (the delay
pattern is set per run), so one captured graph serves many requests.

Attention: on CUDA a Triton kernel (runtime/decode_attention.py) reads the position from device memory, so
self-attention reads exactly the positions written so far under one graph, and cross-attention (a few text
positions) is one small launch; elsewhere SDPA with a mask, one graph per window of `window` positions.

Fewer, larger kernels per step (each of MusicGen's 24-48 layers is a dozen small kernels, and at batch 1 their
count, not their work, sets the step time): the weights are repacked once, in place, so that each layer's query,
key and value projections are one matrix, the codebooks' heads one matrix and their embeddings one table (the
model's own modules keep views into them: no copy, `generate` still works); the Gumbel noise is transformed when
it is drawn, outside the step; and top-k sampling draws among the k candidates only (`sample_top_k`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from audiosubnet.runtime.decode_attention import DecodeAttention

log = logging.getLogger(__name__)

GRAPH_WARMUP = 3


def sample_top_k(logits: torch.Tensor, gumbel: torch.Tensor, k: int) -> torch.Tensor:
    """The Gumbel-max draw from softmax(logits) restricted to the k largest: argmax of logits + gumbel over the
    top k only (the same choice as masking the rest to -inf, without touching the whole vocabulary again)."""
    import torch

    vals, idx = torch.topk(logits, k, dim=-1)
    pick = (vals + torch.gather(gumbel, -1, idx)).argmax(-1, keepdim=True)
    return torch.gather(idx, -1, pick).squeeze(-1)


def _pack(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """One tensor holding `weights` (each (out, in), same `in`) stacked along `out`; each original parameter's
    data becomes a view into it (no copy kept)."""
    import torch

    packed = torch.cat([w.data for w in weights])
    start = 0
    for w in weights:
        n = w.shape[0]
        w.data = packed[start:start + n]
        start += n
    return packed


class FastMusicgen:
    def __init__(self, model: Any, batch: int, steps: int, text_len: int, *, guidance_scale: float = 3.0,
                 top_k: int = 250, temperature: float = 1.0, graph: bool | None = None, chunk: int = 64,
                 window: int = 64, attention: str = "auto") -> None:
        import torch

        self.model = model
        self.dec = model.decoder  # MusicgenForCausalLM
        self.core = self.dec.model.decoder  # MusicgenDecoder
        cfg = self.dec.config
        if getattr(cfg, "audio_channels", 1) != 1:
            raise ValueError("the fast path handles mono MusicGen models only")
        self.K, self.V = int(cfg.num_codebooks), int(cfg.vocab_size)
        self.pad = int(cfg.pad_token_id)
        self.H = int(cfg.num_attention_heads)
        self.E = int(cfg.hidden_size)
        self.D = self.E // self.H
        self.B, self.steps, self.S = batch, steps, text_len
        self.guidance = guidance_scale if guidance_scale and guidance_scale > 1 else None
        self.rows = 2 * batch if self.guidance else batch
        self.top_k, self.temperature = top_k, temperature
        p = next(self.dec.parameters())
        self.device, self.dtype = p.device, p.dtype
        if graph is None:  # ASN_CUDA_GRAPHS=0 runs the same steps eagerly
            from audiosubnet.runtime.cuda_graphs import graphs_enabled

            graph = self.device.type == "cuda" and graphs_enabled()
        self.graph_on = graph
        L, rows, T = len(self.core.layers), self.rows, steps + 1
        z = dict(device=self.device, dtype=self.dtype)
        self.kv_cache = torch.zeros(L, 2, rows, self.H, T, self.D, **z)  # keys and values: one write a layer
        self.T, self.window = T, max(1, int(window))
        self.cross_k = torch.zeros(L, rows, self.H, text_len, self.D, **z)
        self.cross_v = torch.zeros(L, rows, self.H, text_len, self.D, **z)
        self.cross_mask = torch.zeros(rows, 1, 1, text_len, **z)
        self.seq = torch.full((rows, self.K, T), self.pad, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self.positions = self.core.embed_positions.weights[:T].to(**z) if self.core.embed_positions.weights.shape[
            0] >= T else self._positions(T)
        self.forced = self._delay_pattern(T, steps)  # (K, T) True where the token is a pad
        self.t_index = torch.arange(T, device=self.device)
        self.chunk = chunk
        self.noise = torch.rand(batch, chunk, self.K, self.V, device=self.device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}  # attended length -> the step's CUDA graph
        self._repack()
        # the unconditional half attends to zero text states through bias-free projections: its cross-attention
        # output is exactly zero, so only the conditional rows are computed (as `generate` would find)
        att = self.core.layers[0].encoder_attn
        self.cond_only = bool(self.guidance) and all(
            getattr(getattr(att, n), "bias", None) is None for n in ("k_proj", "v_proj", "out_proj"))
        self.crows = batch if self.cond_only else self.rows  # rows that attend to the text
        self.text_last = torch.full((1,), text_len - 1, dtype=torch.long, device=self.device)
        kernels = self._decode_attention(attention)
        self.decode_attn: DecodeAttention | None = kernels[0] if kernels else None
        self.cross_attn: DecodeAttention | None = kernels[1] if kernels else None
        if self.decode_attn is not None:  # reads exactly the positions written: one window, one graph
            self.window = T

    def _repack(self) -> None:
        """Query/key/value weights of each layer's self-attention as one (3E, E) matrix, the K heads as one
        (K*V, E) matrix and the K embedding tables as one (K, V+1, E) tensor, each module keeping a view."""
        import torch

        self.qkv: list[torch.Tensor] = []
        for layer in self.core.layers:
            att = layer.self_attn
            packed = getattr(att, "_asn_qkv", None)
            if packed is None or packed.data_ptr() != att.q_proj.weight.data_ptr():
                packed = att._asn_qkv = _pack([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
            self.qkv.append(packed)
        heads = [h.weight for h in self.dec.lm_heads]
        packed = getattr(self.dec, "_asn_heads", None)
        if packed is None or packed.data_ptr() != heads[0].data_ptr():
            packed = self.dec._asn_heads = _pack(heads)
        self.heads = packed
        tables = [e.weight for e in self.core.embed_tokens]
        emb = getattr(self.core, "_asn_embed", None)
        if emb is None or emb.data_ptr() != tables[0].data_ptr():
            emb = _pack(tables)
            emb = self.core._asn_embed = emb.view(self.K, -1, self.E)
        self.embed = emb
        self.k_offsets = (torch.arange(self.K, device=self.device) * self.embed.shape[1])[None, :]

    # ---- set-up ------------------------------------------------------------------------------------
    def _decode_attention(self, attention: str) -> tuple[DecodeAttention, DecodeAttention] | None:
        """The attention kernels, self- and cross-: "kernel" (the decode-attention kernels: self-attention reads
        positions 0..pos only; cross-attention, over a few text positions, is one small kernel instead of SDPA's
        larger one), "sdpa" (PyTorch's, self-attention over windows of `window` positions), or "auto" (the
        kernels where they can run)."""
        from audiosubnet.runtime.decode_attention import DecodeAttention, decode_attention_unavailable

        if attention not in ("auto", "kernel", "sdpa"):
            raise ValueError(f"attention must be auto, kernel or sdpa, not {attention!r}")
        why = decode_attention_unavailable(self.device, self.D)
        if attention == "sdpa" or (attention == "auto" and (why or self.device.type != "cuda")):
            return None
        if why:
            raise ValueError(f"attention='kernel': {why}")
        try:  # built and run once now: a kernel that does not compile here leaves SDPA in charge
            dt, dev = self.dtype, self.device
            attn = DecodeAttention(self.rows, self.H, self.D, self.T, dtype=dt, device=dev)
            attn(self.kv_cache[0, 0, :, :, 0], self.kv_cache[0, 0], self.kv_cache[0, 1], self.pos)
            cross = DecodeAttention(self.crows, self.H, self.D, self.S, dtype=dt, device=dev)
            cross(self.cross_k[0, : self.crows, :, 0], self.cross_k[0, : self.crows], self.cross_v[0, : self.crows],
                  self.text_last, self.cross_mask[: self.crows, 0, 0])
            return attn, cross
        except Exception as e:
            if attention == "kernel":
                raise
            log.warning("MusicGen decode-attention kernel unusable here (%s); using SDPA", e)
            return None

    def _positions(self, n: int) -> torch.Tensor:
        from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding

        table: torch.Tensor = MusicgenSinusoidalPositionalEmbedding.get_embedding(n, self.E)  # returns unannotated
        return table.to(self.device, self.dtype)

    def _delay_pattern(self, T: int, steps: int) -> torch.Tensor:
        """MusicGen's delay pattern for a run of `steps` steps (positions 0..steps) in a buffer of T positions:
        codebook k is a pad at positions <= k (start) and >= steps + 1 - K + 1 + k (end)."""
        import torch

        j = torch.arange(T, device=self.device)[None, :]
        k = torch.arange(self.K, device=self.device)[:, None]
        return (j <= k) | (j >= steps + 1 - self.K + 1 + k)

    def frames(self, steps: int | None = None) -> int:
        """Audio frames (50 per second for MusicGen) a run of `steps` (default: the capacity) produces."""
        return (self.steps if steps is None else steps) + 1 - self.K

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: int | None = None) -> None:
        """Encode the prompts (padded to `text_len`, the batch to `batch` rows) and fill the cross-attention
        keys/values; set the delay pattern for a run of `steps`; reset the state."""
        import torch
        import torch.nn.functional as F

        m = self.model
        if input_ids.shape[0] > self.B or input_ids.shape[1] > self.S or (steps or 0) > self.steps:
            raise ValueError("the run is larger than this decoder's capacity")
        if input_ids.shape[0] < self.B:  # filler rows: copies of the last prompt, dropped from the output
            extra = self.B - input_ids.shape[0]
            input_ids = torch.cat([input_ids, input_ids[-1:].expand(extra, -1)])
            attention_mask = torch.cat([attention_mask, attention_mask[-1:].expand(extra, -1)])
        if input_ids.shape[1] < self.S:
            extra = self.S - input_ids.shape[1]
            input_ids = F.pad(input_ids, (0, extra), value=0)
            attention_mask = F.pad(attention_mask, (0, extra), value=0)
        input_ids, attention_mask = input_ids[:, : self.S], attention_mask[:, : self.S]
        enc = m.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if getattr(m, "enc_to_dec_proj", None) is not None and \
                m.text_encoder.config.hidden_size != self.E and m.decoder.config.cross_attention_hidden_size is None:
            enc = m.enc_to_dec_proj(enc)
        enc = (enc * attention_mask[..., None]).to(self.dtype)
        mask = attention_mask.to(self.dtype)
        if self.guidance:  # the unconditional half: zero text states, attended uniformly (as generate does)
            enc = torch.cat([enc, torch.zeros_like(enc)])
            mask = torch.cat([mask, torch.ones_like(mask)])
        add = (1.0 - mask) * torch.finfo(self.dtype).min
        self.cross_mask.copy_(add[:, None, None, :])
        for i, layer in enumerate(self.core.layers):
            att = layer.encoder_attn
            self.cross_k[i].copy_(att.k_proj(enc).view(self.rows, self.S, self.H, self.D).transpose(1, 2))
            self.cross_v[i].copy_(att.v_proj(enc).view(self.rows, self.S, self.H, self.D).transpose(1, 2))
        self.forced.copy_(self._delay_pattern(self.forced.shape[1], steps or self.steps))
        self.kv_cache.zero_()
        self.seq.fill_(self.pad)
        self.pos.zero_()

    # ---- one step ------------------------------------------------------------------------------------
    def windows(self, steps: int | None = None) -> list[int]:
        """The attended lengths a run of `steps` uses: multiples of `window` up to the buffer's length."""
        steps = self.steps if steps is None else steps
        return sorted({self._attended(t) for t in range(steps)})

    def _attended(self, t: int) -> int:
        """The attended length of step `t`: the next multiple of `window`, at most the buffer's length."""
        return min(self.T, (t // self.window + 1) * self.window)

    def step(self, attend: int | None = None) -> None:
        """Tokens at `pos` -> tokens at `pos + 1`, `pos += 1`. Only device work (capturable). Self-attention
        reads positions 0..pos through the decode-attention kernel; with SDPA it reads the first `attend` cache
        positions (default: all; must cover `pos`): at batch 32 reading the whole cache was half of a step's time."""
        import torch
        import torch.nn.functional as F

        rows, H, D, E = self.rows, self.H, self.D, self.E
        n = self.T if attend is None else attend
        tok = self.seq.index_select(2, self.pos).squeeze(2)  # (rows, K)
        x = F.embedding(tok + self.k_offsets, self.embed.view(-1, E)).sum(1) * self.core.embed_scale
        x = x + self.positions.index_select(0, self.pos)  # (rows, E)
        if self.decode_attn is None:  # (1, 1, 1, n): positions after `pos` are not attended
            self_mask = torch.where(self.t_index[:n] <= self.pos, 0.0, torch.finfo(self.dtype).min)
            self_mask = self_mask.to(self.dtype)[None, None, None]
        crows = self.crows
        for i, layer in enumerate(self.core.layers):
            att = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            qkv = F.linear(h, self.qkv[i]).view(rows, 1, 3, H, D)
            self.kv_cache[i].index_copy_(3, self.pos, qkv[:, :, 1:].permute(2, 0, 3, 1, 4))
            if self.decode_attn is not None:  # (rows, H, D) over positions 0..pos
                o = self.decode_attn(qkv[:, 0, 0], self.kv_cache[i, 0], self.kv_cache[i, 1], self.pos)
            else:
                kv = self.kv_cache[i, :, :, :, :n]  # (rows, H, 1, D) queries
                o = F.scaled_dot_product_attention(qkv[:, :, 0].transpose(1, 2), kv[0], kv[1], attn_mask=self_mask)
            x = torch.addmm(x, o.reshape(rows, E), att.out_proj.weight.t())  # the residual added in the GEMM
            catt = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x[:crows])
            q = F.linear(h, catt.q_proj.weight)
            if self.cross_attn is not None:  # (crows, H, D) over the text's positions, its padding masked
                o = self.cross_attn(q.view(crows, H, D), self.cross_k[i, :crows], self.cross_v[i, :crows],
                                    self.text_last, self.cross_mask[:crows, 0, 0])
            else:
                o = F.scaled_dot_product_attention(q.view(crows, 1, H, D).transpose(1, 2), self.cross_k[i, :crows],
                                                   self.cross_v[i, :crows], attn_mask=self.cross_mask[:crows])
            if crows == rows:
                x = torch.addmm(x, o.reshape(rows, E), catt.out_proj.weight.t())
            else:  # the conditional rows in place (x is this step's own tensor): no copy of the others
                x[:crows].addmm_(o.reshape(crows, E), catt.out_proj.weight.t())
            h = layer.final_layer_norm(x)
            x = torch.addmm(x, layer.activation_fn(F.linear(h, layer.fc1.weight)), layer.fc2.weight.t())
        x = self.core.layer_norm(x)
        logits = F.linear(x, self.heads).view(rows, self.K, self.V).float()  # (rows, K, V)
        if self.guidance:
            cond, uncond = logits[: self.B], logits[self.B:]
            logits = uncond + (cond - uncond) * self.guidance
        if self.top_k == 1:
            nxt = logits.argmax(-1)
        else:
            logits = logits / max(self.temperature, 1e-5)
            gumbel = self.noise.index_select(1, torch.remainder(self.pos, self.chunk)).squeeze(1)  # (B, K, V)
            # (B, K): a draw from softmax(logits), among the top k
            nxt = sample_top_k(logits, gumbel, self.top_k) if 0 < self.top_k < self.V else (logits + gumbel).argmax(-1)
        nxt_pos = self.pos + 1
        forced = self.forced.index_select(1, nxt_pos).squeeze(1)  # (K,)
        nxt = torch.where(forced[None, :], torch.full_like(nxt, self.pad), nxt)
        if self.guidance:
            nxt = torch.cat([nxt, nxt])
        self.seq.index_copy_(2, nxt_pos, nxt.unsqueeze(2))
        self.pos.add_(1)

    # ---- runs ----------------------------------------------------------------------------------------
    def _capture(self) -> None:
        """One graph per attended length (one memory pool: they replay one at a time), shortest first: the
        warm-up steps move `pos` by a few positions per graph, always inside the window being captured."""
        import torch

        pool = torch.cuda.graph_pool_handle()
        for j, n in enumerate(self.windows()):
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch leaves Stream() unannotated
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(GRAPH_WARMUP if j == 0 else 1):
                    self.step(n)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.step(n)
            self._graphs[n] = graph

    def _refill(self, generators: Sequence[torch.Generator] | None) -> None:
        """The next `chunk` steps' Gumbel noise, per item from its own generator (else the default one)."""
        if generators is None:
            self.noise.uniform_()
        else:
            for b, g in enumerate(generators):
                self.noise[b].uniform_(generator=g)
            for b in range(len(generators), self.B):  # filler rows
                self.noise[b].uniform_()
        self.noise.clamp_(1e-10, 1.0 - 1e-7).log_().neg_().log_().neg_()  # -log(-log(u))

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: int | None = None,
               generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Codes (n, K, frames) for the n prompts: `steps` decoder steps (default: the capacity), replayed from
        graphs on CUDA (one per attended length). `generators`: one torch.Generator per prompt on this device
        (optional)."""
        import torch

        n_items = input_ids.shape[0]
        steps = self.steps if steps is None else steps
        with torch.inference_mode():
            if self.graph_on and not self._graphs:
                self.prepare(input_ids, attention_mask, steps)
                try:
                    self._capture()  # the warm-up steps moved the state: start again below
                except Exception as e:  # never worse than without the graph: eager steps from now on
                    log.warning("MusicGen decode step not captured as a CUDA graph (%s); running it eagerly", e)
                    self.graph_on, self._graphs = False, {}
            self.prepare(input_ids, attention_mask, steps)
            for t in range(steps):
                if t % self.chunk == 0:
                    self._refill(generators)
                n = self._attended(t)
                if self._graphs:
                    self._graphs[n].replay()
                else:
                    self.step(n)
            seq = self.seq[:n_items]
            n = self.frames(steps)
            return torch.stack([seq[:, k, k + 1: k + 1 + n] for k in range(self.K)], dim=1)

    def audio(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> waveforms (B, samples) through the model's EnCodec decoder."""
        import torch

        with torch.inference_mode():
            out = self.model.audio_encoder.decode(codes[None, ...], audio_scales=[None] * codes.shape[0])
            wave: torch.Tensor = out.audio_values[:, 0]
            return wave


def steps_for(seconds: float, frame_rate: float, codebooks: int) -> int:
    """Decoder steps for `seconds` of audio: one frame per step plus the codebooks' delay."""
    return int(math.ceil(seconds * frame_rate)) + codebooks - 1
