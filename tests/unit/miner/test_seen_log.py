"""The miner's seen log (POST /v1/seen): who sent which prompt, with the answer's fingerprint, for validators."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosubnet import protocol, textsketch
from audiosubnet.miner.seen_log import PromptLog
from audiosubnet.scoring.fingerprint import from_wire

NETUID = 16


def seen(h, payload: dict, *, signer=None):
    body = json.dumps(payload).encode()
    return h.post(protocol.PATH_SEEN, body, h.signed(body, signer=signer, target=protocol.PATH_SEEN))


@pytest.mark.parametrize("workers", [False, True], ids=["one process", "workers"])
def test_validators_see_other_callers_prompts_and_the_fingerprints_of_the_answers(harness_factory, keys, workers):
    h = harness_factory(workers=workers)
    relay = keys.friend  # on the allow list: served like a validator
    mine = "The lighthouse keeper counted forty two ships before the storm. Mina counted seven green kettles."
    theirs = "A quiet morning on the harbour, with gulls over the boats. Hugo packed nine golden lanterns."
    assert h.tts({"text": mine}).status_code == 200
    r = h.tts({"text": theirs}, signer=relay)
    assert r.status_code == 200

    got = seen(h, {"window_s": 60})
    assert got.status_code == 200, got.text
    body = protocol.SeenResponse.model_validate_json(got.content)
    assert body.hotkey == h.hotkey
    # only the other caller's prompt: a validator never gets its own requests back
    assert [e.caller for e in body.entries] == [relay.hotkey]
    (e,) = body.entries
    assert e.endpoint == "tts" and e.fingerprint is None and 0 <= e.age_s < 60
    sk = textsketch.decode(e.sketch)
    assert textsketch.containment(textsketch.sketch("Hugo packed nine golden lanterns."), sk) == 1.0
    assert textsketch.containment(textsketch.sketch("Mina counted seven green kettles."), sk) < 0.3

    by_id = protocol.SeenResponse.model_validate_json(seen(h, {"ids": [e.id, 10_000]}).content).entries
    assert [x.id for x in by_id] == [e.id] and by_id[0].fingerprint
    fp = from_wire(by_id[0].fingerprint)
    assert fp.frames > 100  # the answer's audio, fingerprinted

    # the relay asking sees the validator's prompt, not its own
    other = protocol.SeenResponse.model_validate_json(seen(h, {"window_s": 60}, signer=relay).content).entries
    assert [x.caller for x in other] == [keys.validator.hotkey]


def test_seen_takes_the_same_auth_and_policy_as_tts(harness_factory, keys):
    h = harness_factory()
    body = b'{"window_s": 10}'
    assert h.post(protocol.PATH_SEEN, body, {}).status_code == 401  # unsigned
    assert seen(h, {"window_s": 10}, signer=keys.plain).status_code == 403  # registered, no permit
    assert seen(h, {"window_s": 10}, signer=keys.stranger).status_code == 403  # not registered
    assert seen(h, {"window_s": 1e9}).status_code == 422
    assert seen(h, {"ids": list(range(100))}).status_code == 422  # more ids than one request may ask for
    bad = b"[1, 2"
    assert h.post(protocol.PATH_SEEN, bad, h.signed(bad, target=protocol.PATH_SEEN)).status_code == 400
    big = b'{"window_s": 10, "pad": "' + b"x" * 10_000 + b'"}'
    assert h.post(protocol.PATH_SEEN, big, h.signed(big, target=protocol.PATH_SEEN)).status_code == 413


def test_the_logged_fingerprint_is_the_history_form_of_the_full_one():
    from audiosubnet.scoring.fingerprint import fingerprint, to_wire

    x = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    full, light = fingerprint(x), from_wire(to_wire(fingerprint(x, scaled=False)))
    assert light.variants is None and full.variants is not None
    assert (full.bits == light.bits).all() and (full.active == light.active).all()
    assert (full.envelope == light.envelope).all()
    with pytest.raises(ValueError):
        from_wire("bm90IGEgZmluZ2VycHJpbnQ=")


def test_the_log_forgets_old_entries_and_keeps_a_bounded_number():
    now = [0.0]
    log = PromptLog(window_s=10, max_entries=5, clock=lambda: now[0])
    for i in range(8):
        log.add(f"caller{i}", "tts", np.array([i], np.uint32), None)
        now[0] += 1
    assert len(log) == 5
    now[0] += 20
    log.add("late", "tts", np.array([99], np.uint32), None)
    assert len(log) == 1


def test_a_miner_can_keep_no_seen_log(harness_factory, keys):
    h = harness_factory(seen_log=False)
    assert h.tts({"text": "Hugo packed nine golden lanterns."}, signer=keys.friend).status_code == 200
    got = seen(h, {"window_s": 60})
    assert got.status_code == 200 and protocol.SeenResponse.model_validate_json(got.content).entries == []


def test_a_burst_is_fingerprinted_whole_and_a_flood_by_sketch_past_the_backlog():
    import asyncio

    from audiosubnet import audio as audiolib
    from audiosubnet.miner.seen_log import FP_BACKLOG

    wav = audiolib.encode(audiolib.Audio(np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32)
                                         * 0.1, 16000), "wav")
    async def burst(n: int):
        log = PromptLog()
        await asyncio.gather(*(log.record(f"5Caller{i}", "tts", f"Prompt number {i}.", wav) for i in range(n)))
        return await log.seen(protocol.SeenRequest(ids=list(range(1, min(n, 64) + 1))), "5Asker")

    # a validator's request and three relays' at once: every answer fingerprinted (none may be dropped)
    assert all(e.fingerprint for e in asyncio.run(burst(4))) and len(asyncio.run(burst(4))) == 4
    flood = asyncio.run(burst(FP_BACKLOG + 20))  # a flood past the backlog: logged, the extra by sketch only
    with_fp = [e for e in flood if e.fingerprint]
    assert len(flood) == FP_BACKLOG + 20 and FP_BACKLOG <= len(with_fp) < len(flood)
