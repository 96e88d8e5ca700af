"""The offline clone fallback (`world`): real offline voices, real speaker embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.audio import Audio
from audiosubnet.engines import world as W
from audiosubnet.engines.base import SynthesisRequest as R
from audiosubnet.engines.fake import FakeEngine
from audiosubnet.errors import InputError

REF_TEXT = "Please call Stella and ask her to bring these things with her from the store."
TEXT = "The birch canoe slid on the smooth planks, and the boy was there when the sun rose."
ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m7", "en+f4", "en-us+klatt"]


def _shifted(a: Audio, f0_ratio: float, warp: float) -> Audio:
    """Another speaker made from a clip: pitch and vocal-tract length changed with WORLD."""
    pw = W.load_pyworld()
    fr = W.analyse(a.samples, a.sample_rate)
    sp = np.exp(W.warp_envelopes(np.log(np.maximum(fr.sp, 1e-20)), warp, a.sample_rate))
    y = pw.synthesize(np.ascontiguousarray(fr.f0 * f0_ratio), np.ascontiguousarray(sp), fr.ap, a.sample_rate, 5.0)
    return Audio((0.8 * y / np.max(np.abs(y))).astype(np.float32), a.sample_rate)


@pytest.fixture(scope="module")
def references(cpu_cache):
    refs = {}
    with cpu_cache.engine("espeak:en-us") as e:
        for v in ESPEAK_VOICES:
            refs[f"espeak:{v}"] = e.synthesize([R(REF_TEXT, voice=v)])[0]
    with cpu_cache.engine("piper:en_US-joe-medium") as p:
        joe = p.synthesize([R(REF_TEXT, seed=100)])[0]
    refs["piper:joe-shifted"] = _shifted(joe, 1.6, 1.15)
    refs["piper:joe"] = joe
    return refs


@pytest.mark.slow
def test_cloned_speech_is_closer_to_each_reference_speaker_than_the_offline_voice(cpu_cache, references):
    from audiosubnet.scoring.speaker import similarity

    seeds = (1, 2, 3)  # the base voice's seeds: the clone of seed s is the base clip of seed s, converted
    with cpu_cache.engine("piper:en_US-joe-medium") as p:
        bases = p.synthesize([R(TEXT, seed=s) for s in seeds])
    # the joe row: three seeds, so "no harm" is about the engine, not about one draw of VITS noise
    jobs = [(n, 0) for n in references] + [("piper:joe", 1), ("piper:joe", 2)]
    with cpu_cache.engine("world") as w:
        outs = w.synthesize([R(TEXT, reference=references[n], reference_text=REF_TEXT, seed=seeds[k])
                             for n, k in jobs])
    rows: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in references}
    for (n, k), out in zip(jobs, outs, strict=True):
        assert out.sample_rate == 22050 and out.duration > 2.0
        rows[n][0].append(similarity(references[n], bases[k], cpu_cache))
        rows[n][1].append(similarity(references[n], out, cpu_cache))
    means = {n: (float(np.mean(b)), float(np.mean(c))) for n, (b, c) in rows.items()}
    print("\nspeaker similarity to the reference (unconverted offline voice -> cloned):")
    for n, (b, c) in means.items():
        print(f"  {n:22s} {b:.3f} -> {c:.3f}")
    for n, (b, c) in means.items():
        if n == "piper:joe":  # the reference IS the offline voice: cloning must do no harm
            assert c >= b - 0.02, (n, rows[n])
        else:
            assert c > b + 0.1, (n, b, c)


def test_the_offline_voice_is_recognised_as_itself_across_random_draws(cpu_cache, references):
    """Every Piper clip differs (VITS noise); a reference in the same voice must still mean "no change"
    (resynthesis alone costs ~0.13 of speaker similarity), while other voices are converted."""
    fs = 22050
    with cpu_cache.engine("piper:en_US-joe-medium") as p:
        joes = p.synthesize([R(REF_TEXT, seed=s) for s in range(5)] + [R(TEXT, seed=s) for s in range(5, 8)])
        bases = p.synthesize([R("A large size in stockings is hard to sell, and the road shimmered in the heat.",
                                seed=s) for s in range(10, 15)])
    frames = [W.analyse(b.samples, fs) for b in bases]
    stats = [W.voice_stats(f) for f in frames]

    def converted(ref: Audio) -> list[bool]:
        rs = W.voice_stats(W.analyse(ref.resampled(fs).samples, fs, aperiodicity=False))
        return [W.convert(f, s, rs, fs) is not None for f, s in zip(frames, stats, strict=True)]

    assert not any(x for j in joes for x in converted(j))
    for name in ("piper:joe-shifted", "espeak:en-us", "espeak:en-us+m7", "espeak:en+f4"):
        assert all(converted(references[name])), name


def test_pitch_moves_to_the_reference_speaker(cpu_cache, references):
    ref = references["espeak:en-us+f3"]  # a high female variant; joe is a low male voice
    with cpu_cache.engine("world:espeak:en-us") as w:
        out = w.synthesize([R(TEXT, reference=ref)])[0]

    def median_f0(a):
        f = W.analyse(a.resampled(22050).samples, 22050, aperiodicity=False).f0
        return float(np.median(f[f > 0]))

    assert abs(np.log(median_f0(out) / median_f0(ref))) < np.log(1.12)


def test_the_warp_search_finds_a_known_vocal_tract_change(references):
    joe = references["piper:joe"]
    fs = joe.sample_rate
    src = W.voice_stats(W.analyse(joe.samples, fs, aperiodicity=False))
    for true in (0.88, 1.15):
        ref = W.voice_stats(W.analyse(_shifted(joe, 1.0, true).samples, fs, aperiodicity=False))
        assert abs(W.best_warp(src.env_shape, ref.env_shape, fs) - true) <= 0.04, true


def test_deterministic_with_a_deterministic_base_voice(cpu_cache, references):
    """espeak-ng (pitch jitter) varies run to run; the conversion itself does not."""
    req = R(TEXT, reference=references["espeak:en-gb"], reference_text=REF_TEXT)
    with cpu_cache.engine("world:fake:ms_per_char=60") as w:
        a = w.synthesize([req])[0]
        b = w.synthesize([req])[0]
    assert np.array_equal(a.samples, b.samples)


def test_a_seed_gives_the_same_clone_with_the_offline_voice(cpu_cache, references):
    ref = references["espeak:en-gb"]
    with cpu_cache.engine("world") as w:
        assert w.capabilities.seedable
        a, b, c = w.synthesize([R(TEXT, reference=ref, seed=s) for s in (4, 4, 5)])
    assert np.array_equal(a.samples, b.samples)
    assert len(a.samples) != len(c.samples) or not np.array_equal(a.samples, c.samples)


def test_a_batch_is_one_base_call_and_each_reference_is_analysed_once(cpu_cache, references, monkeypatch):
    FakeEngine.calls.clear()
    analysed = []
    real = W.analyse
    monkeypatch.setattr(W, "analyse", lambda x, fs, aperiodicity=True: analysed.append(aperiodicity) or
                        real(x, fs, aperiodicity))
    ref = references["espeak:en-us"]
    reqs = [R(f"Sentence number {i}.", reference=ref) for i in range(5)]
    with cpu_cache.engine("world:fake:ms_per_char=80") as w:
        out = w.synthesize(reqs)
    assert len(out) == 5
    assert FakeEngine.calls == [("ms_per_char=80", 5)]
    assert analysed.count(False) == 1  # the shared reference
    assert analysed.count(True) == 5  # each base clip


def test_requests_without_a_usable_reference_are_refused(cpu_cache):
    with cpu_cache.engine("world:espeak:en-us") as w:
        with pytest.raises(InputError, match="needs a reference"):
            w.synthesize([R(TEXT)])
        with pytest.raises(InputError, match="shorter than 0.5 s"):
            w.synthesize([R(TEXT, reference=Audio(np.zeros(4000, np.float32), 16000))])
        with pytest.raises(InputError, match="too little voiced"):
            w.synthesize([R(TEXT, reference=Audio(np.zeros(32000, np.float32), 16000))])
    assert w.capabilities.clone and not w.capabilities.tts


def test_pyworld_loads_even_without_pkg_resources():
    pw = W.load_pyworld()
    assert callable(pw.dio) and callable(pw.synthesize)
    assert W.WorldCloneEngine.status("auto").downloaded
