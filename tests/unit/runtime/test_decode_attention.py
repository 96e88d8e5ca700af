"""The decode-attention kernels (Triton) against plain softmax attention, run on the CPU by Triton's interpreter:
every split count, positions inside, at and across tile edges, strided views into a larger cache."""

from __future__ import annotations

import pytest


def kernel(device, *args, **kw):
    from audiosubnet.runtime.decode_attention import DecodeAttention

    return DecodeAttention(*args, device=device, **kw)


def reference(q, k, v, pos):
    import torch

    s = torch.einsum("rhd,rhtd->rht", q.double(), k[:, :, : pos + 1].double()) * q.shape[-1] ** -0.5
    return torch.einsum("rht,rhtd->rhd", s.softmax(-1), v[:, :, : pos + 1].double())


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_kernel_equals_softmax_attention_over_the_written_positions(triton_device, splits):
    import torch

    torch.manual_seed(0)
    rows, heads, dim, max_len = 3, 2, 16, 40
    cache = torch.randn(4, 2, rows, heads, max_len, dim)  # (layers, k/v, ...): views like the decoder's
    qkv = torch.randn(rows, 3, heads, dim)
    cache[2, :, :, :, 25:] = 1e4  # beyond pos: never read (it would swamp the softmax)
    cache, qkv = cache.to(triton_device), qkv.to(triton_device)
    q = qkv[:, 0]  # strided (rows, heads, dim)
    attn = kernel(triton_device, rows, heads, dim, max_len, dtype=torch.float32, splits=splits, block=8)
    for pos in (0, 1, 7, 8, 9, 17, 24):
        got = attn(q, cache[2, 0], cache[2, 1], torch.tensor([pos], device=triton_device))
        torch.testing.assert_close(got.double(), reference(q, cache[2, 0], cache[2, 1], pos), rtol=1e-5, atol=1e-5)
    assert got.data_ptr() == attn.out.data_ptr()  # the object's own buffer: nothing allocated per call


def test_additive_mask_per_row_and_position(triton_device):
    """Cross-attention over a padded text: masked positions get no weight, each row its own mask."""
    import torch

    torch.manual_seed(2)
    rows, heads, dim, n = 3, 2, 16, 10
    q, k, v = torch.randn(rows, heads, dim), torch.randn(rows, heads, n, dim), torch.randn(rows, heads, n, dim)
    lengths = torch.tensor([10, 4, 1])
    keep = torch.arange(n)[None, :] < lengths[:, None]
    mask = torch.where(keep, 0.0, torch.finfo(torch.float32).min).view(rows, 1, 1, n)  # as the decoder keeps it
    want = torch.stack([reference(q[r:r + 1], k[r:r + 1], v[r:r + 1], int(lengths[r]) - 1)[0] for r in range(rows)])
    q, k, v, mask = (t.to(triton_device) for t in (q, k, v, mask))
    attn = kernel(triton_device, rows, heads, dim, n, dtype=torch.float32, splits=1, block=4)
    got = attn(q, k, v, torch.tensor([n - 1], device=triton_device), mask[:, 0, 0])
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        attn(q, k, v, torch.tensor([n - 1], device=triton_device), mask[:2, 0, 0])


def test_kernel_in_bfloat16_matches_to_its_rounding(triton_device):
    import torch

    torch.manual_seed(1)
    q, k, v = (torch.randn(*shape).bfloat16().to(triton_device) for shape in ((2, 4, 32), (2, 4, 50, 32),
                                                                              (2, 4, 50, 32)))
    attn = kernel(triton_device, 2, 4, 32, 50, dtype=torch.bfloat16, splits=2, block=16)
    got = attn(q, k, v, torch.tensor([49], device=triton_device))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), reference(q, k, v, 49), rtol=0, atol=2e-2)


def test_bad_shapes_and_layouts_are_refused(triton_device):
    import torch

    attn = kernel(triton_device, 2, 4, 16, 20, dtype=torch.float32, splits=1)
    q, k = torch.randn(2, 4, 16), torch.randn(2, 4, 20, 16)
    with pytest.raises(ValueError, match="do not match"):
        attn(q[:1], k, k, torch.tensor([3]))
    with pytest.raises(ValueError, match="contiguous last dimension"):
        attn(q, k.transpose(-1, -2).contiguous().transpose(-1, -2), k, torch.tensor([3]))
    with pytest.raises(ValueError, match="power of two"):
        kernel(triton_device, 2, 4, 24, 20, dtype=torch.float32)


def test_splits_fill_the_gpu_only_when_rows_times_heads_cannot():
    from audiosubnet.runtime.decode_attention import choose_splits

    assert choose_splits(64 * 24, 132, 504) == 1  # batch 32 with guidance: 1,536 programs
    assert choose_splits(2 * 24, 132, 504) == 8  # batch 1: 48 programs, split 8 ways (one 64-tile each at 504)
    assert choose_splits(2 * 24, 132, 100) == 2  # a short cache: no split smaller than a tile
    assert choose_splits(1, 10_000, 10**6) == 16  # never more than MAX_SPLITS


def test_unavailable_says_why(monkeypatch):
    import torch

    from audiosubnet.runtime.decode_attention import decode_attention_unavailable

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CUDA" in decode_attention_unavailable(torch.device("cpu"), 64)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert decode_attention_unavailable(torch.device("cpu"), 64) is None
    assert "power of two" in decode_attention_unavailable(torch.device("cpu"), 48)
