"""`asn serve` parts: the bind rule, key checks, rate limits, durations, incremental encoders, the voice store."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiosubnet.audio import Audio, wav_bytes
from audiosubnet.errors import AudioDecodeError, UsageError
from audiosubnet.serve.encode import FORMATS, StreamEncoder, decode_any, encode_whole, output_rate
from audiosubnet.serve.security import KeyCheck, RateLimiter, check_bind, is_loopback
from audiosubnet.serve.server import parse_duration
from audiosubnet.serve.voices import VoiceNotFound, VoiceStore

from .conftest import speech_clip


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("10.1.2.3", False), ("example.com", False)])
def test_bind_rule(host, loopback):
    assert is_loopback(host) is loopback
    if loopback:
        check_bind(host, [], insecure=False)
    else:
        with pytest.raises(UsageError, match="without an API key"):
            check_bind(host, [], insecure=False)
        check_bind(host, ["k"], insecure=False)
        check_bind(host, [], insecure=True)
        with pytest.raises(UsageError, match="without an API key"):  # KeyCheck ignores an empty key
            check_bind(host, [""], insecure=False)


def test_key_check():
    keys = KeyCheck(["alpha-key", "beta-key"])
    assert keys.required
    a, b = keys.caller("Bearer alpha-key"), keys.caller("bearer beta-key")
    assert a and b and a != b and a.startswith("key:") and "alpha" not in a
    for bad in (None, "", "Bearer", "Bearer ", "Bearer alpha", "Bearer alpha-key2", "Basic alpha-key", "alpha-key"):
        assert keys.caller(bad) is None, bad
    assert not KeyCheck([]).required


def test_rate_limiter_refills_per_caller():
    now = [0.0]
    rl = RateLimiter(per_min=60, burst_s=2, clock=lambda: now[0])  # 1/s, 2 of burst
    assert rl.take("a") == 0 and rl.take("a") == 0
    wait = rl.take("a")
    assert wait == pytest.approx(1.0)
    assert rl.take("b") == 0  # another caller has its own bucket
    now[0] += 1.0
    assert rl.take("a") == 0
    assert RateLimiter(per_min=0).take("x") == 0


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("30s", 30), ("1.5h", 5400), ("250ms", 0.25),
                                               ("90", 90), ("0", 0), ("-1", None), ("never", None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(UsageError):
        parse_duration("5 parsecs")


def _tone(seconds: float, sr: int = 22050) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    return Audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_encoders_emit_bytes_per_clip_and_decode_whole(fmt):
    enc = StreamEncoder(fmt, 22050)
    parts = [enc.feed(_tone(1.0)) for _ in range(3)]
    parts.append(enc.finish())
    assert all(len(p) > 1000 for p in parts[:3]), [len(p) for p in parts]  # incremental, not all at the end
    data = b"".join(parts)
    if fmt == "pcm":
        assert len(data) == 3 * 24000 * 2
        return
    audio = decode_any(data)
    assert audio.sample_rate == output_rate(fmt, 22050)
    assert audio.duration == pytest.approx(3.0, abs=0.1)


def test_streamed_wav_header_is_readable_and_whole_files_have_exact_sizes():
    enc = StreamEncoder("wav", 16000)
    data = enc.feed(_tone(0.5, 16000)) + enc.feed(_tone(0.5, 16000)) + enc.finish()
    x, sr = sf.read(__import__("io").BytesIO(data))
    assert sr == 16000 and len(x) == 16000
    whole, rate = encode_whole(_tone(1.0), "wav")
    assert rate == 22050 and int.from_bytes(whole[40:44], "little") == 2 * 22050


def test_output_rates():
    assert output_rate("pcm", 16000) == 24000
    assert output_rate("opus", 22050) == 24000 and output_rate("opus", 16000) == 16000
    assert output_rate("mp3", 22050) == 22050 and output_rate("wav", 44100) == 44100


def test_voice_store(tmp_path):
    store = VoiceStore(tmp_path / "voices", max_voices=2)
    v = store.add(speech_clip(1.5), text="  Hello   there. ", name="x" * 100)
    assert v.text == "Hello there." and len(v.name) == 64 and store.get(v.id) == v
    assert store.reference(v.id).duration == pytest.approx(1.5, abs=0.01)
    store.add(speech_clip(1.2))
    with pytest.raises(Exception, match="delete one first"):
        store.add(speech_clip(1.2))
    assert v.id in {x.id for x in store.list()} and len(store.list()) == 2
    with pytest.raises(AudioDecodeError, match="silent"):
        VoiceStore(tmp_path / "v2").add(wav_bytes(np.zeros(32000, np.float32), 16000), text="x")
    for bad in ("../etc", "voice_../../x", "voice_0123456789ABCDEF", ""):
        with pytest.raises(VoiceNotFound):
            store.get(bad)
    assert store.delete(v.id) and not store.delete(v.id)


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    import hmac

    from audiosubnet.serve import security

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    keys = KeyCheck(["k-one", "k-two", "k-three"])
    for presented in ("Bearer k-one", "Bearer nope"):
        calls.clear()
        keys.caller(presented)
        assert [b for _, b in calls] == [b"k-one", b"k-two", b"k-three"]  # no early exit on a match or a miss


def test_first_piece_cuts_at_a_clause_else_between_words_never_after_a_weak_word():
    from audiosubnet.serve.speech import first_piece

    s = "The quick brown fox jumps over the lazy dog."
    assert first_piece(s, 100) == [s]
    assert first_piece(s, 36) == ["The quick brown fox jumps over", "the lazy dog."]  # not "... over the"
    assert first_piece("Well, the quick brown fox jumps over the lazy dog.", 30) == \
        ["Well, the quick brown fox", "jumps over the lazy dog."]
    assert first_piece("When it rains, the quick brown fox stays home.", 30) == \
        ["When it rains,", "the quick brown fox stays home."]  # a clause break before a space


def test_first_chunk_pace_follows_the_engine_speed():
    from audiosubnet.serve.speech import FIRST_CHARS, FIRST_MIN_CHARS, FirstChunkPace

    pace = FirstChunkPace(target_ms=150.0, window=5)
    assert pace.chars("m") == FIRST_CHARS  # nothing measured yet
    pace.observe("m", 20, 20_000.0)  # the call that loaded the model: 1,000 ms per character
    assert pace.chars("m") == FIRST_MIN_CHARS
    pace.observe("m", 50, 250.0)
    pace.observe("m", 50, 250.0)  # 5 ms per character (the median of 3): 30 characters in 150 ms
    assert pace.chars("m") == 30 and pace.chars("other") == FIRST_CHARS
    pace.observe("m", 30, 450.0)
    pace.observe("m", 30, 450.0)  # a busier CPU: 15 ms/char for the last two; median 15 -> 10 characters
    assert pace.chars("m") == FIRST_MIN_CHARS
    for _ in range(3):
        pace.observe("m", 60, 3.0)  # a GPU: three of the last five
    assert pace.chars("m") == FIRST_CHARS
    pace.observe("m", 0, 10.0)
    pace.observe("m", 10, 0.0)  # nothing to learn from
    assert pace.chars("m") == FIRST_CHARS
