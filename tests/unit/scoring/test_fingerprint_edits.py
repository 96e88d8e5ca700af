"""The copy detector against a copier's edits, with real speech from the offline voices: copies
survive resampling, gain, noise, MP3/Opus, speed, tempo and pitch changes, padding and trimming (and two
at once); independent renderings of the same text (Piper with other seeds, espeak variants and speeds),
other voices and other texts are not copies."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest

from audiosubnet.audio import Audio
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.scoring import copyedits as ce
from audiosubnet.scoring import dsp
from audiosubnet.scoring import fingerprint as fpm
from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD, FingerprintHistory, distance, text_key

TEXTS = ["Please remember to bring your umbrella tomorrow morning.",
         "We walked along the river until the sun went down."]


def fp(x: np.ndarray, sr: int) -> fpm.Fingerprint:
    return fpm.fingerprint(dsp.to_16k(Audio(x, sr)))


@pytest.fixture(scope="module")
def speech(cache) -> dict[str, list[Audio]]:
    """{rendering: [Audio per text]}: Piper (three seeds), espeak (plain, 20 % faster, two variants, en-gb)."""
    out = {}
    with cache.engine("piper:en_US-joe-medium") as e:
        for seed in (1, 2, 3):
            out[f"piper{seed}"] = [e.synthesize([SynthesisRequest(t, seed=seed * 100 + i)])[0]
                                   for i, t in enumerate(TEXTS)]
    with cache.engine("espeak:en-us") as e:
        out["espeak"] = e.synthesize([SynthesisRequest(t) for t in TEXTS])
        out["espeak_fast"] = e.synthesize([SynthesisRequest(t, speed=1.2) for t in TEXTS])
        out["espeak_f3"] = e.synthesize([SynthesisRequest(t, voice="en-us+f3") for t in TEXTS])
        out["espeak_m3"] = e.synthesize([SynthesisRequest(t, voice="en-us+m3") for t in TEXTS])
        out["espeak_gb"] = e.synthesize([SynthesisRequest(t, voice="en-gb") for t in TEXTS])
    return out


def _noise(color):
    return lambda x, sr: (ce.add_noise(x, 30.0, color, np.random.default_rng(1)), sr)


EDITS = {
    "resample_24k": lambda x, sr: (ce.resample(x, sr, 24000), 24000),
    "resample_16k": lambda x, sr: (ce.resample(x, sr, 16000), 16000),
    "resample_44k1": lambda x, sr: (ce.resample(x, sr, 44100), 44100),
    "gain_+6dB": lambda x, sr: (ce.gain(x, 6.0), sr),
    "gain_-6dB": lambda x, sr: (ce.gain(x, -6.0), sr),
    "white_noise_30dB": _noise("white"),
    "pink_noise_30dB": _noise("pink"),
    "mp3_64k": lambda x, sr: ce.codec(x, sr, "mp3", 64),
    "opus_64k": lambda x, sr: ce.codec(x, sr, "opus", 64),
    "speed_+5%": lambda x, sr: (ce.speed(x, sr, 1.05), sr),
    "speed_-5%": lambda x, sr: (ce.speed(x, sr, 0.95), sr),
    "tempo_+2%": lambda x, sr: (ce.tempo(x, sr, 1.02), sr),
    "tempo_+5%": lambda x, sr: (ce.tempo(x, sr, 1.05), sr),
    "tempo_-5%": lambda x, sr: (ce.tempo(x, sr, 0.95), sr),
    "pitch_+1": lambda x, sr: (ce.pitch_shift(x, sr, 1.0), sr),
    "pitch_-1": lambda x, sr: (ce.pitch_shift(x, sr, -1.0), sr),
    "pitch_+0.4": lambda x, sr: (ce.pitch_shift(x, sr, 0.4), sr),
    "pad_300ms": lambda x, sr: (ce.pad_trim(x, sr, 0.3, 0.3), sr),
    "trim_300ms": lambda x, sr: (ce.pad_trim(x, sr, -0.3, -0.2), sr),
    "tempo_-4%+opus": lambda x, sr: ce.codec(ce.tempo(x, sr, 0.96), sr, "opus", 64),
    "pitch_-1+pink_30dB": lambda x, sr: _noise("pink")(ce.pitch_shift(x, sr, -1.0), sr),
    "speed_+3%+tempo_+3%": lambda x, sr: (ce.tempo(ce.speed(x, sr, 1.03), sr, 1.03), sr),
    "speed_-5%+trim": lambda x, sr: (ce.pad_trim(ce.speed(x, sr, 0.95), sr, -0.25, 0.2), sr),
    "mp3+gain_-3dB": lambda x, sr: ce.codec(ce.gain(x, -3.0), sr, "mp3", 64),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copy_is_detected(speech, edit):
    for name in ("piper1", "espeak"):
        a = speech[name][0]
        y, sr = EDITS[edit](a.samples, a.sample_rate)
        d = distance(fp(a.samples, a.sample_rate), fp(y, sr))
        print(f"{edit} of {name}: {d:.3f}")
        assert d <= DEFAULT_THRESHOLD, f"{edit} of {name}: distance {d:.3f}"


def test_copy_matches_either_way_and_from_a_stored_history(speech):
    a = speech["piper1"][1]
    orig = fp(a.samples, a.sample_rate)
    copy = fp(*EDITS["pitch_+1"](a.samples, a.sample_rate))
    assert distance(copy, orig) <= DEFAULT_THRESHOLD and distance(orig, copy) <= DEFAULT_THRESHOLD
    # the history keeps no frequency variants: the fresh side brings them, in either role
    h = FingerprintHistory()
    key = text_key(TEXTS[1])
    h.add(orig, key, "hk:A", "uid 1")
    assert h._by_text[key][0].fp.variants is None  # 6 bytes a frame in memory too, not 82
    assert h.find(copy, key, "hk:B") is not None
    restored = FingerprintHistory.from_bytes(h.to_bytes())
    stored = restored._by_text[key][0].fp
    assert stored.variants is None and np.array_equal(stored.bits, orig.bits)
    hit = restored.find(copy, key, "hk:B")
    assert hit is not None and hit.label == "uid 1"
    other = fp(speech["piper2"][1].samples, 22050)
    assert restored.find(other, key, "hk:B") is None


def test_same_text_by_the_same_voice_is_not_a_copy(speech):
    for i in range(len(TEXTS)):
        for x, y in itertools.combinations(["piper1", "piper2", "piper3"], 2):
            d = distance(fp(speech[x][i].samples, 22050), fp(speech[y][i].samples, 22050))
            print(f"text {i} {x} vs {y}: {d:.3f}")
            assert d > DEFAULT_THRESHOLD + 0.02, f"text {i}: {x} vs {y} at {d:.3f}"


def test_espeak_variants_accents_and_speeds_are_not_copies(speech):
    for i in range(len(TEXTS)):
        for x, y in [("espeak", "espeak_f3"), ("espeak", "espeak_m3"), ("espeak_f3", "espeak_m3"),
                     ("espeak", "espeak_gb"), ("espeak", "espeak_fast")]:
            d = distance(fp(speech[x][i].samples, 22050), fp(speech[y][i].samples, 22050))
            print(f"text {i} {x} vs {y}: {d:.3f}")
            assert d > DEFAULT_THRESHOLD, f"text {i}: {x} vs {y} at {d:.3f}"


def test_other_voices_other_texts_and_edited_renderings_are_not_copies(speech):
    p = [fp(a.samples, 22050) for a in speech["piper1"]]
    e = [fp(a.samples, 22050) for a in speech["espeak"]]
    assert distance(p[0], e[0]) > DEFAULT_THRESHOLD + 0.05  # same text, two voices
    assert distance(p[0], p[1]) > DEFAULT_THRESHOLD + 0.05  # other text, one voice
    assert distance(e[0], e[1]) > DEFAULT_THRESHOLD + 0.05
    # a copier's edit of an independent rendering does not make it a copy
    other = speech["piper2"][0]
    for edit in ("tempo_+2%", "pitch_-1", "speed_-5%"):
        d = distance(p[0], fp(*EDITS[edit](other.samples, other.sample_rate)))
        assert d > DEFAULT_THRESHOLD, f"{edit} of another rendering at {d:.3f}"


def test_history_of_the_previous_version_is_refused(speech):
    h = FingerprintHistory()
    a = speech["piper1"][0]
    h.add(fp(a.samples, a.sample_rate), text_key(TEXTS[0]), "hk:A", "uid 1")
    with np.load(io.BytesIO(h.to_bytes())) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["version"] = fpm.FINGERPRINT_VERSION - 1  # bits of the old layout are not comparable
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with pytest.raises(ValueError, match="version"):
        FingerprintHistory.from_bytes(buf.getvalue())
