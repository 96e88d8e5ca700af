"""POST /v1/music end to end: real btauth/1 signatures, the real app and service, a tiny random MusicGen."""

from __future__ import annotations

import json

import pytest

from audiosubnet import audio as audiolib
from audiosubnet import protocol
from audiosubnet.protocol import MusicRequest
from audiosubnet.validator.client import MinerClient

pytestmark = pytest.mark.slow
MODES = pytest.mark.parametrize("workers", [False, True], ids=["one-process", "worker"])


def _post(h, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = h.post("/v1/music", body, h.signed(body, target="/v1/music"))
    return r.status_code, (r.json() if r.headers.get("content-type") == "application/json" else {})


@MODES
def test_music_is_501_without_a_music_model(harness_factory, workers):
    h = harness_factory(workers=workers)
    status, body = _post(h, {"prompt": "lo-fi beat", "duration_s": 1})
    assert status == 501 and body["code"] == "not_implemented" and "music" in body["message"]


@MODES
def test_music_signed_end_to_end(harness_factory, tiny_musicgen, workers):
    h = harness_factory(workers=workers, music_model=f"musicgen:{tiny_musicgen}")

    async def go():
        async with MinerClient(h.keys.validator, transport=h.transport()) as c:
            info = await c.info(h.base)
            a = await c.music(h.base, h.hotkey, MusicRequest(prompt="lo-fi beat with soft piano", duration_s=1.0,
                                                             seed=3))
            b = await c.music(h.base, h.hotkey, MusicRequest(prompt="lo-fi beat with soft piano", duration_s=1.0,
                                                             seed=3, format="flac"))
            tts = await c.tts(h.base, h.hotkey, protocol.TtsRequest(text="Hello there."))
            return info, a, b, tts

    info, a, b, tts = h.run(go())
    assert info.music and [m.id for m in info.models if m.music] == [f"musicgen:{tiny_musicgen}"]
    assert a.ok and a.meta.model == f"musicgen:{tiny_musicgen}" and a.meta.sample_rate == 32000
    clip = audiolib.decode(a.audio)
    assert clip.duration == pytest.approx(1.0, abs=1e-3)
    assert b.ok and b.meta.format == "flac"  # same seed: the same music, losslessly
    assert abs(audiolib.decode(b.audio).samples - clip.samples).max() < 1e-3
    assert tts.ok and tts.meta.model == "fake:default"  # speech still goes to the default model


BAD = [
    ({"prompt": "x" * 257, "duration_s": 1}, 422),
    ({"prompt": "beat", "duration_s": 31}, 422),
    ({"prompt": "beat", "duration_s": 0}, 422),
    (b'{"prompt": "beat", "duration_s": NaN}', 422),
    ({"prompt": "  ", "duration_s": 1}, 422),
    ({"prompt": "beat", "duration_s": 1, "model": "fake:default"}, 422),
    (b"not json", 400),
    (b"[1, 2]", 400),
]


def test_bad_music_requests_never_500(harness_factory, tiny_musicgen):
    h = harness_factory(music_model=f"musicgen:{tiny_musicgen}")
    for payload, status in BAD:
        got, body = _post(h, payload)
        assert got == status, (payload, body)
    body = json.dumps({"prompt": "beat", "duration_s": 1}).encode()
    r = h.post("/v1/music", body, h.signed(body, target="/v1/tts"))  # signed for another path
    assert r.status_code == 401
