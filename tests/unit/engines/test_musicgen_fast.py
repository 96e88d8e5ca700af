"""The static-cache MusicGen decode loop against transformers' `generate` on a tiny random model, and the GPU
benchmark script's CPU smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def greedy_reference(folder, seconds):
    """The tiny model, two prompts of different lengths (one padded), the steps for `seconds`, and `generate`'s
    greedy audio for them."""
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    from audiosubnet.engines.musicgen_fast import steps_for

    model = MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    enc = AutoTokenizer.from_pretrained(folder)(["lo-fi beat with soft piano", "jazz"], padding=True,
                                                return_tensors="pt")
    steps = steps_for(seconds, 50, 4)
    with torch.inference_mode():
        ref = model.generate(**enc, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, guidance_scale=3.0)
    return model, enc, steps, ref


def test_greedy_fast_path_reproduces_generate(tiny_musicgen):
    import torch

    from audiosubnet.engines.musicgen_fast import FastMusicgen

    model, enc, steps, ref = greedy_reference(tiny_musicgen, 0.5)
    n = enc["input_ids"].shape[1]  # the same text length: padding more changes float sums, and a random model
    fast = FastMusicgen(model, 2, steps, text_len=n, guidance_scale=3.0, top_k=1, window=8)  # near-ties to flip
    codes = fast.decode(enc["input_ids"], enc["attention_mask"])
    assert codes.shape == (2, 4, 25) and fast.frames() == 25  # 0.5 s at 50 frames/s
    torch.testing.assert_close(fast.audio(codes), ref[:, 0], rtol=0, atol=1e-6)

    sampled = FastMusicgen(model, 2, steps, text_len=n, guidance_scale=3.0, top_k=50)
    torch.manual_seed(1)
    a = sampled.decode(enc["input_ids"], enc["attention_mask"]).clone()
    torch.manual_seed(1)
    b = sampled.decode(enc["input_ids"], enc["attention_mask"])
    assert torch.equal(a, b) and not torch.equal(a, codes)  # seeded draws, not the greedy path
    assert int(a.max()) < 2048  # no pad token among the frames


def test_greedy_fast_path_with_the_decode_attention_kernel_reproduces_generate(tiny_musicgen, triton_device,
                                                                             monkeypatch):
    """The Triton decode-attention kernel (on the CPU: run by Triton's interpreter) in place of SDPA: one window,
    the same greedy tokens as `generate`."""
    import torch

    if triton_device.type != "cpu":
        pytest.skip("the tiny model's comparison runs on the CPU")
    from audiosubnet.engines.musicgen_fast import FastMusicgen

    model, enc, steps, ref = greedy_reference(tiny_musicgen, 0.3)
    n = enc["input_ids"].shape[1]
    fast = FastMusicgen(model, 2, steps, text_len=n, guidance_scale=3.0, top_k=1, window=8, attention="kernel")
    assert fast.decode_attn is not None and fast.windows() == [fast.T]  # exact reads: one attended length
    codes = fast.decode(enc["input_ids"], enc["attention_mask"])
    torch.testing.assert_close(fast.audio(codes), ref[:, 0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="auto, kernel or sdpa"):
        FastMusicgen(model, 2, steps, text_len=n, attention="flash")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert FastMusicgen(model, 2, steps, text_len=n).decode_attn is None  # auto on a CPU: SDPA
    with pytest.raises(ValueError, match="CUDA"):
        FastMusicgen(model, 2, steps, text_len=n, attention="kernel")


def test_bench_script_smoke_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_music.py"), "--device", "cpu", "--size", "tiny",
                        "--batch", "2", "--seconds", "0.2", "--reps", "1", "--check", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sdpa): max |plain - fast| audio difference 0" in r.stdout
    rows = json.loads(out.read_text())
    assert [row["batch"] for row in rows] == [2]
    for row in rows:
        assert row["fast_finite"] and row["plain_x_realtime"] > 0 and row["fast_x_realtime"] > 0
        assert row["fast_tokens_per_s"] == pytest.approx(row["batch"] * row["steps"] / row["fast_s"])


@pytest.mark.parametrize("k", [1, 7, 250])
def test_top_k_draw_among_the_candidates_equals_masking_the_rest(k):
    import torch

    from audiosubnet.engines.musicgen_fast import sample_top_k

    gen = torch.Generator().manual_seed(k)
    logits = torch.randn(3, 4, 2048, generator=gen)
    gumbel = -torch.log(-torch.log(torch.rand(3, 4, 2048, generator=gen)))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    masked = (logits.masked_fill(logits < kth, float("-inf")) + gumbel).argmax(-1)
    assert torch.equal(sample_top_k(logits, gumbel, k), masked)


def test_repacked_weights_are_views_and_generate_still_runs(tiny_musicgen):
    import torch
    from transformers import MusicgenForConditionalGeneration

    from audiosubnet.engines.musicgen_fast import FastMusicgen

    model = MusicgenForConditionalGeneration.from_pretrained(tiny_musicgen).eval()
    before = sum(p.numel() for p in model.parameters())
    a = FastMusicgen(model, 1, 8, text_len=4)
    b = FastMusicgen(model, 1, 8, text_len=4)  # a second instance reuses the packing
    att = model.decoder.model.decoder.layers[0].self_attn
    assert att.q_proj.weight.data_ptr() == a.qkv[0].data_ptr() == b.qkv[0].data_ptr()
    assert model.decoder.lm_heads[1].weight.data_ptr() == a.heads[a.V:].data_ptr()
    assert sum(p.numel() for p in model.parameters()) == before
    ids = torch.ones(1, 3, dtype=torch.long)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1
