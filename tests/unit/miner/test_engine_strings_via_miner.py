"""Engine-bound strings (voice, model, text) fuzzed through the miner app with the real offline engines
(espeak-ng, Piper): 200 or 422, never a 5xx, never a crash; the miner answers afterwards."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ATTACKS = ["en-us+" + "x" * 37, "en-us+../../../../etc/passwd", "f3", "\n", "en-us+f3", "a" * 5000, "",
           "en-us+Mr serious", "/dev/zero", "C:\\x", "\u202e", "speaker_0", "en-us+f3\x00", "gmw/en-US"]
strings = st.one_of(st.sampled_from(ATTACKS), st.text(max_size=60),
                    st.builds(lambda a, b: a + "+" + b, st.sampled_from(["en-us", "en", "x", ""]), st.text(max_size=60)))
texts = st.one_of(st.just("Hello there."), st.text(min_size=1, max_size=80),
                  st.text(alphabet="ab .\x00\n\u202e\U0001f600[[]]", min_size=1, max_size=40))


@pytest.mark.parametrize("model", ["espeak:en-us", "piper"])
def test_voice_fuzz_through_the_miner(harness_factory, model):
    h = harness_factory(model)
    @settings(max_examples=150 if model.startswith("espeak") else 40, deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(voice=strings, model_field=st.one_of(st.none(), strings), text=texts)
    def run(voice, model_field, text):
        payload = {"text": text, "voice": voice}
        if model_field is not None:
            payload["model"] = model_field
        r = h.tts(json.dumps(payload).encode())
        assert r.status_code in (200, 422), (voice, model_field, r.status_code, r.text[:200])

    run()
    assert h.tts({"text": "Still here."}).status_code == 200


def test_clone_fields_fuzz_through_the_miner_with_world(harness_factory):
    import base64

    import numpy as np

    from audiosubnet import audio as audiolib

    h = harness_factory("piper", clone_model="world")
    t = np.arange(16000, dtype=np.float32) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2).astype(np.float32)
    ref = base64.b64encode(audiolib.encode(audiolib.Audio(tone, 16000), "wav")).decode()

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(text=texts, reference_text=st.one_of(st.none(), texts, strings), model_field=st.one_of(st.none(), strings))
    def run(text, reference_text, model_field):
        payload = {"text": text[:80], "reference_audio": ref}
        if reference_text is not None:
            payload["reference_text"] = reference_text
        if model_field is not None:
            payload["model"] = model_field
        r = h.tts(json.dumps(payload).encode(), target="/v1/clone")
        assert r.status_code in (200, 422), (payload, r.status_code, r.text[:200])

    run()
    ok = h.tts(json.dumps({"text": "Still here.", "reference_audio": ref}).encode(), target="/v1/clone")
    assert ok.status_code == 200, ok.text
