"""MMS (VITS) engine through its real loading code, on a tiny random VITS saved to disk."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from audiosubnet.bench.random_models import build_mms  # noqa: E402
from audiosubnet.engines import registry  # noqa: E402
from audiosubnet.engines.base import SynthesisRequest  # noqa: E402
from audiosubnet.engines.registry import EngineCache  # noqa: E402
from audiosubnet.errors import DependencyError, InputError  # noqa: E402

TEXTS = ["Hello there.", "A much longer sentence, with 12 words and some punctuation in it!", "Hi"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_mms(tmp_path_factory.mktemp("mms") / "mms-tts-tiny")


@pytest.fixture
def engine(lease, folder):
    with lease(f"mms:{folder}") as e:
        yield e
        e.forward_batch = e.cpu_batch
        e.bucket_shapes = False


def synth(engine, texts, seed=7, **kw):
    return engine.synthesize([SynthesisRequest(t, seed=seed, **kw) for t in texts])


def test_hf_folder_id_picks_mms_by_model_type(folder):
    assert registry.parse_model_id(f"hf:{folder}") == ("mms", str(folder))


def test_loads_from_folder_with_declared_capabilities(engine):
    caps = engine.capabilities
    assert engine.loaded and engine.device == "cpu" and engine.dtype == "float32"
    assert caps.sample_rate == 16000 and caps.seedable and caps.voices == ("default",)
    assert not caps.batching and engine.forward_batch == 1  # CPU: one item per forward pass
    assert engine.memory_bytes() > 0
    assert next(engine._model.parameters()).dtype == torch.float32
    assert torch.get_num_threads() == 1


def test_batched_items_equal_unbatched(engine):
    single = [synth(engine, [t])[0] for t in TEXTS]
    engine.forward_batch = 3  # the CUDA path: all three in one padded forward pass
    batched = synth(engine, TEXTS)
    lengths = [len(a.samples) for a in single]
    assert len(set(lengths)) == 3
    for a, b in zip(single, batched, strict=True):
        assert b.sample_rate == 16000
        assert len(a.samples) == len(b.samples)
        assert np.allclose(a.samples, b.samples, atol=2e-4)
        assert np.abs(b.samples).max() > 0.05
    # frames are hop-sized: the decoder upsamples 16x here
    assert all(n % 16 == 0 for n in lengths)


@pytest.mark.parametrize("n", [3, 9])
def test_shape_buckets_do_not_change_the_audio(engine, n):
    """The CUDA path pads batch, tokens and frames up to buckets (masked): same samples as without."""
    texts = [TEXTS[i % len(TEXTS)] + " " + "la " * i for i in range(n)]
    engine.forward_batch = 16
    plain = synth(engine, texts)
    engine.bucket_shapes = True  # 9 items run as 16 (filler rows), tokens and frames padded
    bucketed = synth(engine, texts)
    assert len(bucketed) == n
    # Padded shapes change fp32 rounding (~1e-5 relative) and a predicted duration sitting on an integer can
    # ceil to one frame more (seen with transformers 5.24: one item in nine). Masking bugs change everything.
    same = 0
    for a, b in zip(plain, bucketed, strict=True):
        assert abs(len(a.samples) - len(b.samples)) <= 16  # at most one frame (hop 16 here)
        same += len(a.samples) == len(b.samples) and np.allclose(a.samples, b.samples, atol=2e-4)
    assert same >= n - max(1, n // 4), (same, n)


def test_seeds_reproduce_and_differ(engine):
    a, b = synth(engine, TEXTS[:1], seed=11)[0], synth(engine, TEXTS[:1], seed=11)[0]
    c = synth(engine, TEXTS[:1], seed=12)[0]
    assert np.allclose(a.samples, b.samples)
    assert len(a.samples) != len(c.samples) or not np.allclose(a.samples, c.samples)
    unseeded = [engine.synthesize([SynthesisRequest(TEXTS[0])])[0] for _ in range(2)]
    assert len(unseeded[0].samples) != len(unseeded[1].samples) or not np.allclose(
        unseeded[0].samples, unseeded[1].samples)


def test_matches_transformers_vits_without_noise(engine):
    """With the noise scales at 0 both are deterministic: our batched inference == VitsModel.forward."""
    m = engine._model
    saved = m.noise_scale, m.noise_scale_duration
    m.noise_scale = m.noise_scale_duration = 0.0
    try:
        ours = synth(engine, [TEXTS[1]])[0].samples
        ids = engine._tokenizer(engine._prepare(TEXTS[1]), return_tensors="pt")
        with torch.inference_mode():
            ref = m(**ids).waveform[0].numpy()
    finally:
        m.noise_scale, m.noise_scale_duration = saved
    assert ours.shape == ref.shape
    assert np.allclose(ours, ref, atol=1e-5)


def test_speed_scales_duration(engine):
    base, fast = synth(engine, [TEXTS[1]])[0], synth(engine, [TEXTS[1]], speed=2.0)[0]
    assert 0.35 < len(fast.samples) / len(base.samples) < 0.65


def test_numbers_are_spoken(engine):
    assert len(engine._token_ids("12")) > len(engine._token_ids("ab"))


def test_unpronounceable_text_is_an_input_error(engine):
    with pytest.raises(InputError):
        engine.check(SynthesisRequest("日本語"))


def test_uroman_languages_need_uroman(engine, monkeypatch):
    monkeypatch.setattr(engine._tokenizer, "is_uroman", True)
    monkeypatch.setitem(sys.modules, "uroman", None)
    with pytest.raises(DependencyError) as err:
        engine.synthesize([SynthesisRequest("Привет")])
    assert "uroman" in str(err.value)


def test_unload_drops_the_weights(folder, monkeypatch):
    monkeypatch.setenv("ASN_TORCH_THREADS", "1")
    cache = EngineCache(device="cpu")
    with cache.engine(f"hf:{folder}") as e:
        assert e.loaded
    key = cache.loaded()[0]
    assert cache.unload(key)
    assert not e.loaded and e._model is None and cache.loaded() == []


@pytest.mark.parametrize("text", ["Hello there.", "  Two  spaces, UPPER and lower!  ", "naïve café – “quotes”",
                                  "digits 123 and symbols #$%", "", "日本語 mixed with latin", "a-b'c"])
def test_fast_tokenizer_equals_vits_tokenizer(engine, text):
    from audiosubnet.engines.mms import vits_ids_fast

    tok = engine._tokenizer
    assert vits_ids_fast(tok, text) == tok(text)["input_ids"]


def test_own_spline_equals_transformers_inverse_spline():
    """The duration flows' inverse spline without boolean masks or host checks: same values, inside and
    outside the tail bound."""
    from transformers.models.vits.modeling_vits import _unconstrained_rational_quadratic_spline

    from audiosubnet.engines.mms import spline_reverse

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 37, generator=g) * 4  # about a quarter outside the bound of 5
    w, h, d = (torch.randn(4, 1, 37, 10, generator=g) for _ in range(3))
    d = d[..., :9]
    ref, _ = _unconstrained_rational_quadratic_spline(x, w, h, d.clone(), reverse=True, tail_bound=5.0)
    ours = spline_reverse(x, w, h, d, 5.0)
    assert (x.abs() > 5).any() and (x.abs() <= 5).any()
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)


def test_the_stages_run_as_graphs_equal_eager(engine, fake_capture):
    """The CUDA path's two stages through GraphCache (a fake capture with a graph's semantics, on the CPU):
    static buffers reused across calls of one shape bucket give the same audio as the eager pass."""
    from audiosubnet.runtime.cuda_graphs import GraphCache

    texts = [TEXTS[i % 3] + " " + "la " * i for i in range(5)]
    engine.forward_batch, engine.bucket_shapes = 8, True
    eager = synth(engine, texts)
    fake = fake_capture()
    engine._graphs = {name: GraphCache(fn, after=0, capture=fake, enabled=True)
                      for name, fn in (("durations", engine._durations), ("waveform", engine._waveform))}
    try:
        graphed, again = synth(engine, texts), synth(engine, texts[::-1])
    finally:
        engine._graphs = None
    assert fake.captures == 2 and fake.replays >= 2
    for a, b, c in zip(eager, graphed, again[::-1], strict=True):
        assert len(a.samples) == len(b.samples) == len(c.samples)
        assert np.allclose(a.samples, b.samples, atol=2e-4) and np.allclose(a.samples, c.samples, atol=2e-4)


def test_warm_up_captures_every_single_request_bucket_so_fresh_texts_never_run_eagerly(engine, fake_capture):
    """On CUDA a validator's prompts are all new: warm-up captures each stage for every token bucket (up to the
    longest text taken) and every frame bucket (up to `warm_graph_seconds`), so a single request of any fresh
    text replays graphs only, with the eager pass's audio."""
    from audiosubnet.engines.mms import FRAME_BUCKET, TOKEN_BUCKET
    from audiosubnet.runtime.cuda_graphs import GraphCache

    texts = ["Mina counted seven green kettles.", "A much longer sentence, with twelve words and punctuation!",
             "Hi there", "The quick brown fox jumps over the lazy dog near the riverbank at dawn."]
    engine.forward_batch, engine.bucket_shapes = 8, True
    eager = [synth(engine, [t])[0] for t in texts]
    fake = fake_capture()
    tokens, frames = engine.single_buckets()
    hop = math.prod(engine._model.config.upsample_rates)
    assert tokens[0] == TOKEN_BUCKET and tokens[-1] >= 2 * engine.capabilities.max_text_chars + 1
    assert frames[-1] * hop >= engine.warm_graph_seconds * engine._model.config.sampling_rate
    # every bucket up to what these texts need (all of them take minutes on a CPU), and one more of each
    need_t = max(2 * len(t) + 1 for t in texts)
    need_f = max(len(a.samples) for a in eager) // hop + 1
    tokens = [t for t in tokens if t < need_t + TOKEN_BUCKET + 1]
    frames = [f for f in frames if f < need_f + 2 * FRAME_BUCKET]
    engine.single_buckets = lambda: (tokens, frames)
    engine._graphs = {name: GraphCache(fn, after=1, capture=fake, enabled=True, size=2)
                      for name, fn in (("durations", engine._durations), ("waveform", engine._waveform))}
    try:
        done = engine.capture_single_buckets()
        assert done == {"durations": len(tokens), "waveform": len(frames)} and fake.captures == len(tokens) + len(frames)
        graphed = [synth(engine, [t])[0] for t in texts]
        stats = {name: g.stats for name, g in engine._graphs.items()}
    finally:
        engine._graphs = None
        del engine.single_buckets
    assert all(s.eager == 0 and s.replays == len(texts) for s in stats.values()), stats
    for a, b in zip(eager, graphed, strict=True):
        assert len(a.samples) == len(b.samples) and np.allclose(a.samples, b.samples, atol=2e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_graphs_equal_eager(folder, monkeypatch, dtype):
    """The real capture on a GPU: each stage is recorded once per shape bucket and replays the eager audio."""
    monkeypatch.setenv("ASN_CUDA_GRAPHS", "1")
    texts = [TEXTS[i % 3] + " " + "la " * i for i in range(11)]
    with EngineCache(device="cuda", dtype=dtype).engine(f"mms:{folder}") as e:
        graphs = e._graphs
        graphs["waveform"].max_numel = None  # the tiny model's hop is 16 samples: its batches are many frames
        e._graphs = None
        eager = synth(e, texts)
        e._graphs = graphs
        runs = [synth(e, texts) for _ in range(3)]  # eager (first sighting), capture, replay
        stats = {name: g.stats for name, g in graphs.items()}
    assert all(s.captured >= 1 and s.replays >= 1 and not s.failed for s in stats.values()), stats
    tol = 2e-4 if dtype == "float32" else 2e-2
    for run in runs:
        for a, b in zip(eager, run, strict=True):
            assert len(a.samples) == len(b.samples)
            assert np.allclose(a.samples, b.samples, atol=tol)
