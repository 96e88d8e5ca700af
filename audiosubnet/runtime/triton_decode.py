"""Triton kernels of `decode_attention` (imported only where Triton is installed: CUDA builds of torch bring it).

One query per (row, head) against the keys/values of a static cache, positions 0..`pos` only, `pos` read from
device memory (so one launch, and one captured CUDA graph, serves every step), optionally with an additive mask
per row and position. Each program runs an online softmax over its share of the positions in tiles of BLOCK_N;
with SPLITS > 1 the positions are split among SPLITS programs per (row, head) (flash-decoding: enough programs to
fill the GPU when rows x heads is small), each writing its normalised partial output and log-sum-exp, and
`combine` merges them.

`TRITON_INTERPRET=1` before this module is imported runs the kernels on the CPU (the tests do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import triton
import triton.language as tl

# the decorator, typed for the checker; the kernels' parameters stay unannotated (Triton resolves annotations
# itself: pointers and numbers have none, compile-time constants are `tl.constexpr`)
jit = cast("Callable[[Callable[..., None]], Any]", triton.jit)

NEG = tl.constexpr(-1.0e30)  # "minus infinity" that keeps exp() and differences finite


@jit
def attend(Q, K, V, Out, MID_O, MID_LSE, POS, MASK, scale,  # type: ignore[no-untyped-def]
           stride_qr, stride_qh, stride_kr, stride_kh, stride_kt, stride_vr, stride_vh, stride_vt,
           stride_or, stride_oh, stride_mr,
           HEADS: tl.constexpr, DIM: tl.constexpr, BLOCK_N: tl.constexpr, SPLITS: tl.constexpr,
           HAS_MASK: tl.constexpr):
    pid = tl.program_id(0)  # (row, head)
    split = tl.program_id(1)
    r = pid // HEADS
    h = pid % HEADS
    n = tl.load(POS) + 1  # positions 0..pos are attended
    share = ((n + SPLITS - 1) // SPLITS + BLOCK_N - 1) // BLOCK_N * BLOCK_N  # whole tiles per split
    lo = split * share
    hi = tl.minimum(lo + share, n)
    d = tl.arange(0, DIM)
    q = tl.load(Q + r * stride_qr + h * stride_qh + d).to(tl.float32) * scale
    m_i = tl.max(tl.full([BLOCK_N], NEG, tl.float32), 0)
    l_i = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
    acc = tl.zeros([DIM], tl.float32)
    k_base = K + r * stride_kr + h * stride_kh
    v_base = V + r * stride_vr + h * stride_vh
    for start in range(lo, hi, BLOCK_N):
        t = start + tl.arange(0, BLOCK_N)
        ok = t < hi
        k = tl.load(k_base + t[:, None] * stride_kt + d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
        s = tl.sum(k * q[None, :], 1)
        if HAS_MASK:  # additive, per row and position (a text's padding)
            s += tl.load(MASK + r * stride_mr + t, mask=ok, other=0.0).to(tl.float32)
        s = tl.where(ok, s, NEG)
        m_new = tl.maximum(m_i, tl.max(s, 0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        v = tl.load(v_base + t[:, None] * stride_vt + d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        l_i = l_i * alpha + tl.sum(p, 0)
        m_i = m_new
    if SPLITS == 1:
        tl.store(Out + r * stride_or + h * stride_oh + d, (acc / l_i).to(Out.dtype.element_ty))
    else:  # an empty share (short runs) has l_i = 0: weight exp(NEG - max) = 0 in `combine`
        safe = tl.where(l_i > 0, l_i, 1.0)
        tl.store(MID_O + (pid * SPLITS + split) * DIM + d, acc / safe)
        tl.store(MID_LSE + pid * SPLITS + split, tl.where(l_i > 0, m_i + tl.log(safe), NEG))


@jit
def combine(MID_O, MID_LSE, Out, stride_or, stride_oh,  # type: ignore[no-untyped-def]
            HEADS: tl.constexpr, DIM: tl.constexpr, SPLITS: tl.constexpr):
    pid = tl.program_id(0)
    r = pid // HEADS
    h = pid % HEADS
    s = tl.arange(0, SPLITS)
    d = tl.arange(0, DIM)
    lse = tl.load(MID_LSE + pid * SPLITS + s)
    w = tl.exp(lse - tl.max(lse, 0))
    o = tl.load(MID_O + (pid * SPLITS + s)[:, None] * DIM + d[None, :])
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    tl.store(Out + r * stride_or + h * stride_oh + d, out.to(Out.dtype.element_ty))
