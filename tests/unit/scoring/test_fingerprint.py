"""Perceptual fingerprints: copies survive resampling, gain, lossy codecs and trimming; different
sentences of one voice do not match. Plus the rolling history and its persistence."""

from __future__ import annotations

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.scoring import dsp
from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD, FingerprintHistory, distance, fingerprint, text_key


def fp(a: Audio):
    return fingerprint(dsp.to_16k(a))


def trim(a: Audio, start_s: float = 0.0, end_s: float = 0.0) -> Audio:
    n0, n1 = int(start_s * a.sample_rate), len(a.samples) - int(end_s * a.sample_rate)
    return Audio(a.samples[n0:n1], a.sample_rate)


TRANSFORMS = {
    "resampled_22050_to_16000": lambda a: audiolib.resample(a, 16000),
    "minus_6_db": lambda a: Audio(a.samples * 0.5, a.sample_rate),
    "mp3": lambda a: audiolib.decode(audiolib.encode(a, "mp3")),
    "ogg": lambda a: audiolib.decode(audiolib.encode(a, "ogg")),
    "trimmed_100ms_start": lambda a: trim(a, start_s=0.1),
    "trimmed_100ms_end": lambda a: trim(a, end_s=0.1),
    "all_at_once": lambda a: audiolib.decode(audiolib.encode(
        trim(Audio(audiolib.resample(a, 16000).samples * 0.5, 16000), 0.1, 0.1), "mp3")),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transformed_copy_is_a_duplicate(voices, name):
    a = voices["piper"][0]
    assert a.sample_rate == 22050
    d = distance(fp(a), fp(TRANSFORMS[name](a)))
    print(f"{name}: BER {d:.3f}")
    assert d <= DEFAULT_THRESHOLD


def test_different_sentences_of_one_voice_are_not_duplicates(voices):
    clips = voices["piper"][:4] + voices["espeak"][:2]
    fps = [fp(a) for a in clips]
    worst = min(distance(fps[i], fps[j]) for i in range(4) for j in range(4) if i != j)
    print(f"closest pair of different piper sentences: BER {worst:.3f}")
    assert worst > DEFAULT_THRESHOLD + 0.1
    # the same sentence by two voices is not a copy either
    assert distance(fps[0], fp(voices["espeak"][0])) > DEFAULT_THRESHOLD + 0.1


def test_degenerate_inputs_do_not_match_or_raise():
    silence = fingerprint(np.zeros(16000, np.float32))
    short = fingerprint(np.zeros(10, np.float32))
    noise = fingerprint(np.random.default_rng(0).standard_normal(32000).astype(np.float32))
    assert distance(silence, silence) == 1.0  # nothing active: no identity
    assert distance(short, noise) == 1.0
    assert distance(noise, noise) == 0.0


def test_history_finds_copies_of_other_miners_only(voices):
    a, b = voices["piper"][0], voices["piper"][1]
    h = FingerprintHistory(max_entries=10, max_per_text=3)
    key = text_key("Some Prompt.")
    assert key == text_key("some prompt")  # normalised text
    h.add(fp(a), key, "hk:A", "uid 1")
    h.next_round()
    copy = fp(audiolib.decode(audiolib.encode(a, "ogg")))
    assert h.find(copy, key, "hk:A") is None  # the same miner repeating itself
    hit = h.find(copy, key, "hk:B")
    assert hit is not None and hit.label == "uid 1" and hit.round == 0
    assert h.find(fp(b), key, "hk:B") is None
    assert h.find(copy, text_key("another prompt"), "hk:B") is None


def test_history_is_bounded_and_round_trips(tmp_path, voices):
    h = FingerprintHistory(max_entries=5, max_per_text=2)
    fps = [fp(a) for a in voices["piper"][:4]]
    for i in range(8):
        h.add(fps[i % 4], f"text{i % 3}", f"hk:{i}", f"uid {i}")
        h.next_round()
    assert len(h) <= 5
    restored = FingerprintHistory.from_bytes(h.to_bytes())
    assert len(restored) == len(h) and restored.round == h.round == 8
    for key, entries in h._by_text.items():
        got = restored._by_text[key]
        assert [e.miner for e in got] == [e.miner for e in entries]
        assert all(np.array_equal(x.fp.bits, y.fp.bits) for x, y in zip(got, entries, strict=True))
    path = tmp_path / "fp.npz"
    h.save(path)
    assert len(FingerprintHistory.load(path)) == len(h)
    path.write_bytes(b"not a history")
    fresh = FingerprintHistory.load(path)
    assert len(fresh) == 0 and (tmp_path / "fp.npz.bad").exists()
    assert len(FingerprintHistory.load(tmp_path / "missing.npz")) == 0
    with pytest.raises(ValueError):
        FingerprintHistory.from_bytes(b"\x00" * 10)
