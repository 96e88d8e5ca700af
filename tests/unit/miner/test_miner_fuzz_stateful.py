"""Property, stateful: sequences of signed, replayed, mutated and malformed requests never get a 5xx (and
never a 200 they should not get); the miner stays healthy. Over 5,000 generated requests against the real app in
process (fake engine, real btauth/1 signatures, real policy, queue and HTTP stack).

Each step is one request: a valid signed request (fields drawn from the good and the odd), a replay of an earlier
one, a body changed after signing, a header dropped, corrupted or swapped, another encoding or content type,
another method or path, or a hang-up mid-body through the raw ASGI interface.
"""

from __future__ import annotations

import asyncio
import base64
import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

HARNESS = {"model": "fake:clone=true,ms_per_char=1", "max_body_bytes": 16 * 1024, "max_wait_ms": 0,
           "queue_size": 64}
AUTH = ("X-Bittensor-Version", "X-Bittensor-Hotkey", "X-Bittensor-Nonce", "X-Bittensor-Signature",
        "X-Bittensor-Receiver", "X-Bittensor-Crypto")
STEPS, EXAMPLES = 50, 150  # runs stop early at random: about 5,200 requests
SENT = {"n": 0}

odd_strings = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "\x00", "\n", "0x", "1e9", "-1",
                                                               "9" * 40, "\u202e", "btauth/1", "sr25519"]))
values = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=True), odd_strings,
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                        max_size=2))
fields = st.fixed_dictionaries(
    {"text": st.one_of(st.text(min_size=1, max_size=120), values)},
    optional={"model": st.one_of(st.sampled_from(["fake", "auto", "espeak:en-us"]), values),
              "voice": st.one_of(st.sampled_from(["a", "b", "en-us+f3"]), values),
              "format": st.one_of(st.sampled_from(["wav", "flac", "mp3"]), values),
              "sample_rate": st.one_of(st.integers(-10, 200000), values),
              "seed": st.one_of(st.integers(-(2**64), 2**64), values),
              "reference_audio": st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                                           values),
              "reference_text": values, "extra": values})
encodings = st.sampled_from(["json", "utf-16", "bom", "latin-1", "truncated", "garbage", "array", "multipart"])
targets = st.sampled_from(["/v1/tts", "/v1/tts", "/v1/tts", "/v1/clone", "/v1/tts?x=1", "/v1/tts/", "/v1//tts",
                           "/V1/TTS", "/v1/info", "/metrics"])


def _encode(payload: dict, how: str) -> tuple[bytes, str]:
    text = json.dumps(payload, default=str)
    if how == "utf-16":
        return text.encode("utf-16"), "application/json"
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode(), "application/json"
    if how == "latin-1":
        return text.encode("latin-1", errors="replace"), "application/json; charset=latin-1"
    if how == "truncated":
        return text.encode()[: max(1, len(text) // 2)], "application/json"
    if how == "garbage":
        return bytes(range(256)) * 2, "application/octet-stream"
    if how == "array":
        return json.dumps([payload], default=str).encode(), "application/json"
    if how == "multipart":
        return (b"--xx\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n" + text.encode()[:80] +
                b"\r\n--xx--\r\n"), "multipart/form-data; boundary=xx"
    return text.encode(), "application/json"


class MinerSequences(RuleBasedStateMachine):
    h = None  # the module's harness, set by the test

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[str, bytes, dict, str]] = []

    def _post(self, target: str, body: bytes, headers: dict, ctype: str | None, *, allowed=None):
        h = type(self).h
        SENT["n"] += 1
        r = h.post(target, body, headers, content_type=ctype)
        assert r.status_code < 500 or r.status_code == 503 and "retry-after" in r.headers, (r.status_code, r.text)
        if allowed is not None:
            assert r.status_code in allowed, (target, r.status_code, r.text[:200])
        return r

    @rule(payload=fields, how=encodings, path=targets)
    def signed(self, payload, how, path):
        target = path
        h = type(self).h
        body, ctype = _encode(payload, how)
        headers = h.signed(body, target=target)
        r = self._post(target, body, headers, ctype)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("audio/")
        self.sent.append((target, body, headers, ctype))
        del self.sent[:-20]

    @rule(data=st.data())
    def replay(self, data):
        if not self.sent:
            return
        target, body, headers, ctype = data.draw(st.sampled_from(self.sent))
        if target.startswith("/v1/tts") or target.startswith("/v1/clone"):
            r = self._post(target, body, headers, ctype)
            assert r.status_code != 200  # a replay is never served twice

    @rule(payload=fields, flip=st.integers(0, 10**6))
    def body_changed_after_signing(self, payload, flip):
        h = type(self).h
        body = json.dumps(payload, default=str).encode()
        headers = h.signed(body)
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        self._post("/v1/tts", tampered, headers, "application/json", allowed={401})

    @rule(payload=fields, name=st.sampled_from(AUTH), value=st.one_of(st.none(), odd_strings),
          signer=st.sampled_from(["validator", "stranger", "plain", "friend", "enemy", "poor"]))
    def header_mutated(self, payload, name, value, signer):
        h = type(self).h
        body = json.dumps(payload, default=str).encode()
        headers = h.signed(body, signer=getattr(h.keys, signer))
        if value is None:
            headers.pop(name, None)
        else:
            # as a wire would carry it: any bytes but CR, LF and NUL
            headers[name] = value.encode("utf-8", "replace").translate(None, b"\r\n\x00")
        r = self._post("/v1/tts", body, headers, "application/json")
        assert r.status_code != 200 or signer in ("validator", "friend", "poor")

    @rule(payload=fields, other=st.sampled_from(["stranger", "validator", "miner"]))
    def wrong_receiver(self, payload, other):
        h = type(self).h
        body = json.dumps(payload, default=str).encode()
        receiver = h.hotkey[:-1] + ("A" if h.hotkey[-1] != "A" else "B") if other == "miner" else \
            getattr(h.keys, other).hotkey
        self._post("/v1/tts", body, h.signed(body, receiver=receiver), "application/json", allowed={401})

    @rule(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]), path=targets,
          body=st.binary(max_size=64))
    def other_methods(self, method, path, body):
        target = path
        h = type(self).h
        SENT["n"] += 1
        r = h.run(h.http.request(method, target, content=body, headers=h.signed(body, target=target,
                                                                                 method=method)))
        assert r.status_code < 500 or r.status_code == 503

    @rule(payload=fields, cut=st.integers(0, 200))
    def hang_up_mid_body(self, payload, cut):
        h = type(self).h
        body = json.dumps(payload, default=str).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in h.signed(body).items()]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        sent, calls = [], [0]

        async def receive():
            calls[0] += 1
            if calls[0] == 1:
                return {"type": "http.request", "body": body[: min(cut, len(body) - 1)], "more_body": True}
            return {"type": "http.disconnect"}

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/tts", "raw_path": b"/v1/tts", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
        SENT["n"] += 1
        h.run(asyncio.wait_for(h.app(scope, receive, send), 10))
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        assert status == 499

    @invariant()
    def healthy(self):
        h = type(self).h
        assert h.ctx.service.state == "ok"


def test_stateful_request_sequences_never_get_a_5xx(module_harness):
    MinerSequences.h = module_harness
    SENT["n"] = 0
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(MinerSequences, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck)))
    assert SENT["n"] >= 5000, SENT["n"]
    h = module_harness
    r = h.run(h.http.get("/health"))
    assert r.status_code == 200 and r.json()["status"] == "ok"
    errors = h.ctx.metrics.registry.get_sample_value("asn_miner_requests_total", {"endpoint": "tts",
                                                                                  "status": "500"})
    assert errors is None
