"""The real `openai` SDK against a running `asn serve` (offline Piper voice) on a loopback port."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

openai = pytest.importorskip("openai")

from audiosubnet.serve.encode import FORMATS, PCM_RATE, decode_any  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TEXT = "The weather is lovely today."
LONG = ("The first sentence is short. The second sentence is a little longer than the first one was. "
        "Here comes the third sentence of this text. A fourth sentence follows it closely. "
        "The fifth one talks about the weather, which is lovely. Number six is about a garden full of roses. "
        "The seventh sentence describes a quiet river at night. And the eighth sentence ends the whole story.")


def client(server, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0, timeout=120,
                         http_client=httpx.Client(trust_env=False, timeout=120))


@pytest.fixture(scope="module")
def asr():
    from audiosubnet.scoring import asr as asrlib

    scorer = asrlib.create_asr_scorer("fw:bundled")
    scorer.setup("cpu", "float32")
    yield scorer
    scorer.unload()


def transcript(asr, audio) -> str:
    from audiosubnet.scoring import dsp

    return asr.transcribe([dsp.to_16k(audio)])[0].lower()


@pytest.mark.parametrize("fmt", FORMATS)
def test_speech_create_every_format(server, asr, fmt):
    resp = client(server).audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
    data = resp.content
    if fmt == "pcm":
        x = np.frombuffer(data, "<i2").astype(np.float32) / 32768
        from audiosubnet.audio import Audio

        audio = Audio(x, PCM_RATE)
    else:
        audio = decode_any(data)
    assert 1.0 < audio.duration < 6.0, fmt
    if fmt in ("wav", "pcm", "mp3"):
        words = transcript(asr, audio)
        print(f"{fmt}: {audio.duration:.2f} s, ASR: {words!r}")
        assert "weather" in words and "today" in words


def test_streaming_sends_the_first_sentence_before_the_rest_is_synthesized(server, asr):
    c = client(server)
    t0 = time.perf_counter()
    first = None
    parts = []
    with c.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG,
                                                       response_format="pcm") as r:
        for chunk in r.iter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - t0
            parts.append(chunk)
    total = time.perf_counter() - t0
    pcm = b"".join(parts)
    seconds = len(pcm) / 2 / PCM_RATE
    print(f"streamed {seconds:.1f} s of audio: first bytes after {first * 1000:.0f} ms, all after "
          f"{total * 1000:.0f} ms")
    assert seconds > 15
    assert first < 0.35 * total  # the first of eight sentences, not the whole text
    from audiosubnet.audio import Audio

    words = transcript(asr, Audio(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, PCM_RATE))
    assert "first sentence" in words and "whole story" in words  # every sentence, in order


def test_streamed_mp3_and_sse(server):
    c = client(server)
    with c.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG[:200],
                                                       response_format="mp3") as r:
        data = b"".join(r.iter_bytes())
    assert decode_any(data).duration > 5
    raw = httpx.post(server.base + "/v1/audio/speech", json={"input": LONG[:200], "response_format": "pcm",
                                                              "stream_format": "sse"}, timeout=60, trust_env=False)
    assert raw.status_code == 200 and "speech.audio.delta" in raw.text and "speech.audio.done" in raw.text


def test_saved_voice_upload_and_use(server):
    c = client(server)
    # two seconds of one unseeded rendering can hold too little voiced speech for the cloner (seen once in CI-like
    # runs): a longer reference
    ref_text = "This is my reference voice clip, read slowly and clearly so that a voice can be taken from it."
    ref = c.audio.speech.create(model="tts-1", voice="alloy", input=ref_text, response_format="wav").content
    # the SDK's own custom-voice call (multipart: name, audio_sample, consent); the transcript rides along
    v = c.audio.voices.create(name="me", audio_sample=("ref.wav", ref, "audio/wav"), consent="cons_local",
                              extra_body={"text": ref_text})
    assert v.id.startswith("voice_") and v.object == "audio.voice" and v.type == "audio_sample" and v.name == "me"
    out = c.audio.speech.create(model="tts-1", voice={"id": v.id}, input=TEXT, response_format="wav")
    audio = decode_any(out.content)
    assert out.response.headers["x-asn-model"].startswith("world")
    assert 0.8 < audio.duration < 8
    assert v.id in c.get("/audio/voices", cast_to=object)["voices"]
    assert c.get(f"/audio/voices/{v.id}", cast_to=object)["reference_text"] == ref_text
    gone = c.audio.voices.delete(v.id)
    assert gone.deleted and gone.id == v.id
    with pytest.raises(openai.NotFoundError):
        c.audio.speech.create(model="tts-1", voice=v.id, input=TEXT, response_format="wav")


def test_errors_arrive_as_openai_exceptions(server):
    c = client(server)
    with pytest.raises(openai.BadRequestError) as e:
        c.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="ogg")
    assert e.value.param == "response_format" and e.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError) as e:
        c.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=10)
    assert e.value.param == "speed"
    with pytest.raises(openai.NotFoundError) as e:
        c.audio.speech.create(model="no-such-model", voice="alloy", input=TEXT)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.audio.speech.create(model="tts-1", voice="not-a-voice", input=TEXT)
    assert e.value.param == "voice"
    with pytest.raises(openai.BadRequestError) as e:
        c.audio.speech.create(model="tts-1", voice="alloy", input="x" * 5000)
    assert e.value.param == "input"
    assert [m.id for m in c.models.list()][-3:] == ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]


def test_a_public_bind_without_a_key_refuses_to_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "audiosubnet", "serve", "--host", "0.0.0.0", "--port", "8123"],
                       capture_output=True, text=True, timeout=60, env={"ASN_HOME": str(tmp_path), "PATH": "/usr/bin"})
    assert r.returncode == 2, r.stderr
    assert "refusing to serve on 0.0.0.0 without an API key" in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("error:")]) == 1


def test_api_key_required_and_checked(start_server):
    s = start_server("--host", "127.0.0.1", "--api-key", "right-key", "--clone-model", "none").wait()
    with pytest.raises(openai.AuthenticationError) as e:
        client(s, "wrong-key").audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav")
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    ok = client(s, "right-key").audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav")
    assert decode_any(ok.content).duration > 1
