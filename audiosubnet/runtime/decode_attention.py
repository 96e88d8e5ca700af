"""Single-query attention over a static KV cache that reads only the positions written so far.

An autoregressive decode step attends one new query per row and head to the cached positions 0..pos. PyTorch's
`scaled_dot_product_attention` takes a fixed key length (a CUDA graph fixes every shape) and a mask: every step
reads the whole cache, or one graph is captured per window of lengths and a step reads up to a window's end.
Here the position is read from device memory by the kernel itself, so one launch (and one captured graph) reads
exactly the positions written so far, whatever the step: the Triton kernels in `triton_decode` (Triton comes
with CUDA builds of torch), flash-decoding style: when rows x heads programs are too few to fill the GPU
(batch 1), each (row, head) splits its positions among several programs and a second kernel merges their
partial softmaxes.

`decode_attention_unavailable(device, head_dim)` says why the kernels cannot run there (None when they can);
callers keep SDPA as their fallback. On the CPU the kernels run only under Triton's interpreter
(`TRITON_INTERPRET=1`): the tests check them against plain softmax attention that way.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BLOCK_N = 64  # positions per tile
MAX_SPLITS = 16


def decode_attention_unavailable(device: torch.device, head_dim: int) -> str | None:
    """Why `DecodeAttention` cannot run on `device` (None: it can)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "the decode-attention kernels run on CUDA (or under TRITON_INTERPRET=1)"
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if head_dim & (head_dim - 1) or head_dim < 16:
        return f"head size {head_dim} is not a power of two >= 16"
    return None


def choose_splits(programs: int, processors: int, max_len: int, block: int = BLOCK_N) -> int:
    """Programs per (row, head): doubled while rows x heads x splits is under four per multiprocessor, at most
    one tile per split of a full cache and MAX_SPLITS."""
    splits = 1
    tiles = -(-max_len // block)
    while programs * splits < 4 * processors and splits * 2 <= min(tiles, MAX_SPLITS):
        splits *= 2
    return splits


class DecodeAttention:
    """`attn(q, k, v, pos, mask=None)`: q (rows, heads, dim), k and v (rows, heads, max_len, dim) (any strides with
    the last one 1: views into a larger cache are fine), pos a one-element integer tensor, mask an optional
    additive (rows, max_len) tensor -> (rows, heads, dim), softmax attention of each query over positions 0..pos.
    The output is this object's own buffer, overwritten by the next call. No host synchronisation: capturable in
    a CUDA graph."""

    def __init__(self, rows: int, heads: int, dim: int, max_len: int, *, dtype: torch.dtype, device: torch.device,
                 splits: int | None = None, block: int = BLOCK_N, num_warps: int = 4) -> None:
        import torch

        from audiosubnet.runtime import triton_decode

        if dim & (dim - 1):
            raise ValueError(f"head size {dim} is not a power of two")
        self.kernels = triton_decode
        self.rows, self.heads, self.dim, self.block, self.num_warps = rows, heads, dim, block, num_warps
        self.programs = rows * heads
        if splits is None:
            sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
            splits = choose_splits(self.programs, sms, max_len, block)
        if splits & (splits - 1):
            raise ValueError(f"splits must be a power of two, not {splits}")
        self.splits = splits
        self.scale = dim ** -0.5
        self.out = torch.empty(rows, heads, dim, dtype=dtype, device=device)
        n = self.programs * splits if splits > 1 else 1
        self.mid_out = torch.empty(n, dim, dtype=torch.float32, device=device)
        self.mid_lse = torch.empty(n, dtype=torch.float32, device=device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        if q.shape != self.out.shape or k.shape[:2] != q.shape[:2] or k.shape[3] != self.dim \
                or v.shape != k.shape or (mask is not None and mask.shape != (k.shape[0], k.shape[2])):
            got = "" if mask is None else f", mask {tuple(mask.shape)}"
            raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}{got} do not "
                             f"match (rows, heads, dim) = {tuple(self.out.shape)}")
        if any(t.stride(-1) != 1 for t in (q, k, v) + (() if mask is None else (mask,))):
            raise ValueError("q, k, v and mask need a contiguous last dimension")
        out, kern = self.out, self.kernels
        kern.attend[(self.programs, self.splits)](
            q, k, v, out, self.mid_out, self.mid_lse, pos, out if mask is None else mask, self.scale,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
            out.stride(0), out.stride(1), 0 if mask is None else mask.stride(0),
            HEADS=self.heads, DIM=self.dim, BLOCK_N=self.block, SPLITS=self.splits, HAS_MASK=mask is not None,
            num_warps=self.num_warps)
        if self.splits > 1:
            kern.combine[(self.programs,)](self.mid_out, self.mid_lse, out, out.stride(0), out.stride(1),
                                           HEADS=self.heads, DIM=self.dim, SPLITS=self.splits, num_warps=1)
        return out
