"""The `asn serve` app in process (fake engine): formats, streaming, SSE, errors, auth, saved voices, keep-alive."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from audiosubnet.serve.encode import FORMATS, PCM_RATE, decode_any

from .conftest import speech_clip

TEXT = "Hello there, how are you?"  # 25 characters: 1.5 s of fake audio


def _duration(data: bytes, fmt: str) -> float:
    if fmt == "pcm":
        return len(data) / 2 / PCM_RATE
    return decode_any(data).duration


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_expected_duration(served, fmt):
    r = served.post("/v1/audio/speech", {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith({"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                                                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}[fmt])
    assert r.headers["x-asn-model"] == "fake:default"
    lossy = fmt in ("mp3", "opus", "aac")  # codec frames and priming add a little
    assert _duration(r.content, fmt) == pytest.approx(1.5, abs=0.15 if lossy else 0.01)


def test_speed_reaches_the_engine(served):
    r = served.post("/v1/audio/speech", {"model": "tts-1", "input": TEXT, "voice": "a", "response_format": "wav",
                                         "speed": 2.0})
    assert r.status_code == 200 and decode_any(r.content).duration == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "flac", "aac"])
def test_a_long_text_streams_every_sentence_in_order(served, fmt):
    sentences = [f"Sentence {'x' * (5 * i)} number {i}." for i in range(1, 7)]
    r = served.post("/v1/audio/speech", {"input": " ".join(sentences), "voice": "alloy", "response_format": fmt})
    assert r.status_code == 200
    assert "content-length" not in r.headers  # chunked: streamed
    expected = sum(len(s) for s in sentences) * 0.06
    assert _duration(r.content, fmt) == pytest.approx(expected, abs=0.15)
    if fmt == "wav":
        assert r.content[4:8] == b"\xff\xff\xff\xff"  # a streaming header: length unknown


def test_sse_events_have_openai_shapes(served):
    text = "First sentence here. And a second one."
    r = served.post("/v1/audio/speech", {"input": text, "voice": "alloy", "response_format": "pcm",
                                         "stream_format": "sse"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 3
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(pcm) / 2 / PCM_RATE == pytest.approx(len(text.replace(" And", "And")) * 0.06, abs=0.1)
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert set(done["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}


def _error(r, status, param=None, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(("body", "status", "param", "code"), [
    ({"voice": "alloy"}, 400, "input", "missing_required_parameter"),
    ({"input": "", "voice": "alloy"}, 400, "input", None),
    ({"input": "   ", "voice": "alloy"}, 400, "input", None),
    ({"input": "hi", "response_format": "ogg"}, 400, "response_format", "invalid_value"),
    ({"input": "hi", "speed": 9}, 400, "speed", "invalid_value"),
    ({"input": "hi", "speed": "fast"}, 400, "speed", "invalid_value"),
    ({"input": "hi", "stream_format": "chunks"}, 400, "stream_format", "invalid_value"),
    ({"input": "hi", "model": "nope:nothing"}, 404, "model", "model_not_found"),
    ({"input": "hi", "voice": "zz-unknown"}, 400, "voice", "invalid_voice"),
    ({"input": "x" * 4097}, 400, "input", "string_above_max_length"),
    ({"input": 5}, 400, "input", None),
    ({"input": "hi", "voice": "voice_0123456789abcdef"}, 404, "voice", "voice_not_found"),
])
def test_bad_requests_get_openai_errors(served, body, status, param, code):
    _error(served.post("/v1/audio/speech", body), status, param, code)


def test_malformed_bodies_and_routes(served):
    _error(served.post("/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}), 400)
    _error(served.post("/v1/audio/speech", content=b"[1]", headers={"content-type": "application/json"}), 400)
    _error(served.post("/v1/audio/speech", content=b"a=b", headers={"content-type": "text/plain"}), 400)
    _error(served.post("/v1/audio/speech", content=b"x" * 70000, headers={"content-type": "application/json"}), 413)
    _error(served.get("/v1/nothing"), 404)
    _error(served.get("/v1/audio/speech"), 405)


def test_an_engine_input_error_is_400_not_500(make_served):
    s = make_served(models=["fake:fail=boom"])
    _error(s.post("/v1/audio/speech", {"input": "this goes boom", "voice": "alloy"}), 400)


def test_models_and_voices_lists(served):
    data = served.get("/v1/models").json()
    ids = [m["id"] for m in data["data"]]
    assert data["object"] == "list" and ids[0] == "fake:default" and "tts-1" in ids and "fake:clone=true" in ids
    assert all(m["object"] == "model" for m in data["data"])
    assert served.get("/v1/models/tts-1").json()["id"] == "tts-1"
    _error(served.get("/v1/models/gpt-9"), 404, code="model_not_found")
    voices = served.get("/v1/audio/voices").json()
    assert {"a", "b", "alloy", "nova", "shimmer"} <= set(voices["voices"])


def test_openai_voice_names_map_to_configured_local_voices(make_served):
    s = make_served(voices={"nova": "b"})
    listed = {v["id"]: v for v in s.get("/v1/audio/voices").json()["data"]}
    assert listed["nova"]["maps_to"] == "b" and listed["alloy"]["maps_to"] == "(default voice)"
    r = s.post("/v1/audio/speech", {"input": TEXT, "voice": "nova", "response_format": "wav"})
    assert r.status_code == 200


def test_api_keys_and_rate_limits(make_served):
    s = make_served(api_keys=["sekret-1", "sekret-2"], rate_limit_per_min=6)  # 1 token of burst per 10 s
    body = {"input": TEXT, "response_format": "wav"}
    _error(s.post("/v1/audio/speech", body), 401, code="invalid_api_key")
    _error(s.post("/v1/audio/speech", body, headers={"Authorization": "Bearer sekret-3"}), 401)
    _error(s.post("/v1/audio/speech", body, headers={"Authorization": "sekret-1"}), 401)
    _error(s.get("/v1/models"), 401)
    ok = s.post("/v1/audio/speech", body, headers={"Authorization": "Bearer sekret-2"})
    assert ok.status_code == 200
    limited = s.post("/v1/audio/speech", body, headers={"Authorization": "Bearer sekret-2"})
    _error(limited, 429, code="rate_limit_exceeded")
    assert int(limited.headers["retry-after"]) >= 1
    assert s.post("/v1/audio/speech", body, headers={"Authorization": "Bearer sekret-1"}).status_code == 200
    assert s.get("/health").status_code == 200  # health and the page stay open
    metrics = s.get("/metrics", headers={"Authorization": "Bearer sekret-1"}).text
    assert "asn_serve_auth_failures_total 4.0" in metrics


def test_saved_voices_json_and_multipart(served):
    clip = speech_clip(2.0)
    r = served.post("/v1/audio/voices", {"audio": base64.b64encode(clip).decode(), "text": "A test clip.",
                                         "name": "Tester"})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["id"].startswith("voice_") and v["name"] == "Tester" and v["duration_s"] == pytest.approx(2.0)
    r2 = served.post("/v1/audio/voices", files={"file": ("me.wav", clip, "audio/wav")}, data={"text": "Again."})
    assert r2.status_code == 201, r2.text
    ids = {x["id"] for x in served.get("/v1/audio/voices").json()["data"] if x["type"] == "audio_sample"}
    assert ids == {v["id"], r2.json()["id"]}
    assert served.get(f"/v1/audio/voices/{v['id']}").json()["reference_text"] == "A test clip."

    r = served.post("/v1/audio/speech", {"input": TEXT, "voice": v["id"], "response_format": "wav"})
    assert r.status_code == 200 and r.headers["x-asn-model"] == "fake:clone=true"
    assert decode_any(r.content).duration == pytest.approx(1.5, abs=0.05)

    r = served.post("/v1/audio/speech", {"input": TEXT, "voice": {"id": v["id"]}, "response_format": "wav"})
    assert r.status_code == 200 and r.headers["x-asn-model"] == "fake:clone=true"  # OpenAI's voice object
    assert served.delete(f"/v1/audio/voices/{v['id']}").json()["deleted"] is True
    _error(served.delete(f"/v1/audio/voices/{v['id']}"), 404)
    _error(served.post("/v1/audio/speech", {"input": TEXT, "voice": v["id"]}), 404, "voice")


@pytest.mark.parametrize(("body", "status"), [
    ({"audio": "https://example.com/clip.wav", "text": "hi"}, 400),  # not base64: no URL is ever fetched
    ({"audio": 5, "text": "hi"}, 400),
    ({"text": "hi"}, 400),
    ({"audio": base64.b64encode(b"not audio at all").decode(), "text": "hi"}, 400),
    ({"audio": base64.b64encode(speech_clip(0.3)).decode(), "text": "hi"}, 400),  # too short
])
def test_bad_voice_uploads(served, body, status):
    _error(served.post("/v1/audio/voices", body), status)


def test_voice_upload_cap_and_path_ids(make_served):
    s = make_served(max_voice_bytes=20000)
    clip = speech_clip(2.0)  # 64 KB
    _error(s.post("/v1/audio/voices", files={"file": ("a.wav", clip)}, data={"text": "x"}), 413)
    _error(s.get("/v1/audio/voices/..%2F..%2Fetc"), 404)
    _error(s.delete("/v1/audio/voices/voice_zz"), 404)


def test_models_load_on_first_use_and_unload_after_keep_alive(make_served):
    s = make_served(keep_alive="0.3s")
    assert s.get("/health").json()["models_loaded"] == []
    assert s.post("/v1/audio/speech", {"input": TEXT, "response_format": "pcm"}).status_code == 200
    assert s.get("/health").json()["models_loaded"] == ["fake:default"]
    deadline = time.monotonic() + 5
    while s.get("/health").json()["models_loaded"] and time.monotonic() < deadline:
        s.run(__import__("asyncio").sleep(0.1))
    assert s.get("/health").json()["models_loaded"] == []
    assert s.post("/v1/audio/speech", {"input": TEXT, "response_format": "pcm"}).status_code == 200  # reloads


def test_metrics_count_served_audio(served):
    served.post("/v1/audio/speech", {"input": TEXT, "response_format": "wav"})
    text = served.get("/metrics").text
    assert 'asn_serve_requests_total{endpoint="speech",status="200"} 1.0' in text
    assert 'asn_serve_audio_seconds_total{model="fake:default"} 1.5' in text
    assert "asn_serve_first_audio_seconds_count 1.0" in text


def test_the_page_is_served_without_external_resources(served):
    r = served.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/audio/speech" in r.text and "http://" not in r.text and "https://" not in r.text


def test_pcm_is_24khz_16bit(served):
    r = served.post("/v1/audio/speech", {"input": TEXT, "response_format": "pcm"})
    x = np.frombuffer(r.content, "<i2")
    assert len(x) == pytest.approx(1.5 * 24000, abs=50) and np.abs(x).max() > 1000


def test_a_stream_sends_the_first_sentence_alone_then_growing_batches(served):
    from audiosubnet.engines.fake import FakeEngine

    FakeEngine.calls.clear()
    text = " ".join(f"Sentence number {i}." for i in range(1, 9))
    r = served.post("/v1/audio/speech", {"input": text, "response_format": "pcm"})
    assert r.status_code == 200
    assert [n for model, n in FakeEngine.calls if model == "default"] == [1, 1, 2, 4]


def test_a_long_first_sentence_is_cut_at_a_clause_when_streamed(served):
    from audiosubnet.serve import speech
    from audiosubnet.serve.openai_api import SpeechRequest

    first = "When the long first sentence of a story goes on, and on, past every clause, with more words " \
            "than a listener should wait for, it is cut."
    p = speech.plan(SpeechRequest(input=first + " Then a second one."), served.ctx.service, voice_map={},
                    voices=None, clone_model=None)
    assert len(p.chunks[0]) <= speech.FIRST_CHARS and p.chunks[0].endswith(",")
    assert " ".join(p.chunks) == first + " Then a second one."
    whole = speech.plan(SpeechRequest(input=first), served.ctx.service, voice_map={}, voices=None, clone_model=None)
    assert whole.chunks == [first]  # one sentence, one file: not cut


def test_several_models_share_the_cache_under_a_budget(make_served):
    # each fake model holds 1 MiB; the budget fits one at a time: the idle one is evicted, and reloads on use
    s = make_served(budget_bytes=int(1.5 * 2**20), models=["fake:sr=16000", "fake:sr=22050"], clone_model="none")
    for model, rate in [("fake:sr=16000", 16000), ("fake:sr=22050", 22050), ("fake:sr=16000", 16000)]:
        r = s.post("/v1/audio/speech", {"model": model, "input": TEXT, "response_format": "wav"})
        assert r.status_code == 200 and r.headers["x-asn-model"] == model
        assert r.headers["x-asn-sample-rate"] == str(rate)
        assert s.get("/health").json()["models_loaded"] == [model]
    assert s.cache.evictions == 2
    models = {m["id"]: m for m in s.get("/v1/models").json()["data"]}
    assert models["fake:sr=22050"]["asn"]["tts"] is True and "fake:clone=true" not in models
    _error(s.post("/v1/audio/voices", {"audio": "", "text": "x"}), 400, code="cloning_unavailable")


def test_instructions_are_accepted_and_bounded(served):
    ok = served.post("/v1/audio/speech", {"input": TEXT, "instructions": "Speak cheerfully.", "response_format": "wav"})
    assert ok.status_code == 200
    _error(served.post("/v1/audio/speech", {"input": TEXT, "instructions": "x" * 5000}), 400, "instructions")


def test_a_stream_under_way_waits_for_room_in_a_full_queue(make_served):
    # a queue of 2: the first sentence is admitted, the later ones wait for room instead of cutting the stream
    s = make_served(queue_size=2)
    text = " ".join(f"Sentence number {i}." for i in range(1, 9))
    r = s.post("/v1/audio/speech", {"input": text, "response_format": "pcm"})
    assert r.status_code == 200
    assert len(r.content) / 2 / 24000 == pytest.approx(sum(len(f"Sentence number {i}.") for i in range(1, 9)) * 0.06,
                                                       abs=0.05)


def test_a_slow_engine_gets_a_shorter_first_piece_when_streamed(make_served):
    from audiosubnet.serve import speech
    from audiosubnet.serve.openai_api import SpeechRequest

    s = make_served(models=["fake:delay_ms=250"], clone_model="none")
    svc, pace = s.ctx.service, speech.FirstChunkPace(target_ms=150.0)
    text = "The quick brown fox jumps over the lazy dog near the old mill. Then a second one."

    def streamed() -> speech.Plan:
        p = speech.plan(SpeechRequest(input=text, response_format="pcm"), svc, voice_map={}, voices=None,
                        clone_model=None, pace=pace)

        async def run() -> int:
            head, rest, _ = await speech.produce(svc, p, time.monotonic() + 30, speech.Outcome(), pace)
            return len(head) + sum([len(b) async for b in rest])

        assert s.run(run()) > 0
        return p

    first = streamed()
    assert first.chunks[0] == "The quick brown fox jumps over the lazy dog near the old mill."  # not measured yet
    second = streamed()  # ~250 ms for 62 characters: ~37 fit in 150 ms
    assert 16 <= len(second.chunks[0]) <= 40 and second.chunks[0].split()[-1] not in ("the", "of")
    assert " ".join(second.chunks) == text and len(second.chunks) == 3
