"""Property: no client input makes the miner answer 500 (hypothesis, > 1,000 cases against the real app).

Most cases are correctly signed requests from a registered validator, so they pass auth and policy and
reach size checks, parsing, validation, the queue and the engine (the fake engine through the real cache);
the rest carry garbage auth headers. Allowed answers: 200, 400, 401, 413, 422 (and 429/501 where relevant).
"""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_BODY = 16 * 1024
HARNESS = {"model": "fake:clone=true,ms_per_char=5", "max_body_bytes": MAX_BODY, "max_wait_ms": 0, "queue_size": 64}
FIELDS = ("text", "model", "voice", "format", "sample_rate", "seed", "reference_audio", "reference_text")


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(
    max_size=40)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                                max_size=4),
                           max_leaves=12)
field_values = {
    "text": st.one_of(st.text(max_size=600), st.text(alphabet="ab \u00e9\u4e2d\U0001f600\x00\n", max_size=80),
                      json_values),
    "model": st.one_of(st.sampled_from(["fake", "fake:default", "auto", "piper", "hf:/etc", ""]), json_values),
    "voice": st.one_of(st.sampled_from(["a", "b", "c", ""]), json_values),
    "format": st.one_of(st.sampled_from(["wav", "flac", "mp3", "WAV", ""]), json_values),
    "sample_rate": st.one_of(st.integers(-10, 10**6), st.sampled_from([8000, 16000, 22050, 48000]), json_values),
    "seed": st.one_of(st.integers(-(2**40), 2**40), json_values),
    "reference_audio": st.one_of(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()), json_values),
    "reference_text": json_values,
}

def _wav_b64(seconds: float) -> str:
    import numpy as np

    from audiosubnet import audio as audiolib

    t = np.arange(int(seconds * 8000)) / 8000
    x = (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    return base64.b64encode(audiolib.encode(audiolib.Audio(x, 8000), "wav")).decode()


GOOD_REF = _wav_b64(0.6)
valid_payloads = st.fixed_dictionaries(
    {"text": st.text(min_size=1, max_size=400)},
    optional={"voice": st.sampled_from(["a", "b"]), "format": st.sampled_from(["wav", "flac"]),
              "sample_rate": st.integers(8000, 48000), "seed": st.integers(0, 2**32 - 1),
              "model": st.sampled_from(["fake", "auto", "fake:clone=true,ms_per_char=5"]),
              "reference_audio": st.sampled_from([GOOD_REF, GOOD_REF[:200], ""]),
              "reference_text": st.text(max_size=50), "extra": json_values})
payloads = st.fixed_dictionaries({}, optional={k: field_values[k] for k in FIELDS}) | st.dictionaries(
    st.text(max_size=12), json_values, max_size=5)


def _body(draw_kind, payload, valid, raw, clone):
    if draw_kind == "valid":
        if not clone:
            valid = {k: v for k, v in valid.items() if k != "reference_audio"}
        elif "reference_audio" not in valid:
            valid = {**valid, "reference_audio": GOOD_REF}
        return json.dumps(valid).encode()
    if draw_kind == "json":
        return json.dumps(payload, ensure_ascii=bool(len(str(payload)) % 2)).encode()
    if draw_kind == "raw":
        return raw
    if draw_kind == "huge":
        return json.dumps({"text": "z" * (MAX_BODY + len(raw))}).encode()
    return json.dumps(payload)[: max(0, len(raw) % 40)].encode()  # truncated JSON


@_settings(900)
@given(kind=st.sampled_from(["valid", "valid", "valid", "json", "json", "raw", "huge", "truncated"]),
       payload=payloads, valid=valid_payloads, raw=st.binary(max_size=300),
       endpoint=st.sampled_from(["/v1/tts", "/v1/tts", "/v1/clone"]),
       ctype=st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", "",
                                                          "multipart/form-data; boundary=xyz", "multipart/form-data"]))
def test_signed_garbage_never_500(module_harness, kind, payload, valid, raw, endpoint, ctype):
    h = module_harness
    body = _body(kind, payload, valid, raw, endpoint == "/v1/clone")
    r = h.post(endpoint, body, h.signed(body, target=endpoint), content_type=ctype or None)
    assert r.status_code in (200, 400, 413, 422, 501), (r.status_code, r.text[:300], body[:200])
    if r.status_code != 200:
        err = r.json()
        assert set(err) == {"code", "message"} and err["message"]
    else:
        assert r.headers["content-type"] in ("audio/wav", "audio/flac") and len(r.content) > 44


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@_settings(350)
@given(version=st.sampled_from(["1", "2", "", None]), hotkey=st.one_of(st.none(), header_text),
       nonce=st.one_of(st.none(), header_text, st.integers(-(2**70), 2**70).map(str)),
       signature=st.one_of(st.none(), header_text, st.binary(min_size=0, max_size=80).map(lambda b: "0x" + b.hex())),
       crypto=st.sampled_from([None, "sr25519", "ed25519", "ecdsa", "zz"]), receiver=st.one_of(st.none(), header_text),
       use_real_receiver=st.booleans())
def test_garbage_auth_headers_are_401(module_harness, version, hotkey, nonce, signature, crypto, receiver,
                                      use_real_receiver):
    h = module_harness
    raw = {"X-Bittensor-Version": version, "X-Bittensor-Hotkey": hotkey, "X-Bittensor-Nonce": nonce,
           "X-Bittensor-Signature": signature, "X-Bittensor-Crypto": crypto,
           "X-Bittensor-Receiver": h.hotkey if use_real_receiver else receiver}
    headers = {k: v for k, v in raw.items() if v is not None}
    r = h.post("/v1/tts", b'{"text": "hi"}', headers)
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.json()["code"] == "unauthorized"
