"""Relay detection over real seen logs (miner/seen_log.PromptLog) and real audio: the relay is caught through
resampling, a 3 % speed change, gain, noise and an MP3 round trip; an honest miner whose prompt was asked of another miner by a third
party (a framing attempt) is not; neither is a twin that renders the same engine's audio for its own prompt."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr

from audiosubnet import audio as audiolib
from audiosubnet import protocol
from audiosubnet.chain.base import Peer
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.miner.seen_log import PromptLog
from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD
from audiosubnet.validator.prompts import PromptSource
from audiosubnet.validator.relay import find_relays, issued

ME = "5Validator"


class LogClient:
    """Stands in for MinerClient.seen: each peer's answer comes from its real PromptLog."""

    def __init__(self, logs: dict[str, PromptLog]):
        self.logs = logs
        self.calls = 0

    async def seen(self, endpoint, hotkey, request, *, timeout_s=3.0):
        self.calls += 1
        entries = await self.logs[hotkey].seen(request, ME)
        resp = protocol.SeenResponse(hotkey=hotkey, entries=entries)
        return resp, len(resp.model_dump_json())


def peer(uid: int) -> Peer:
    return Peer(uid=uid, hotkey=f"hk{uid}", coldkey=f"ck{uid}", endpoint=f"10.0.0.{uid}:8091", validator_permit=False,
                stake=0.0)


@pytest.fixture(scope="module")
def voice(cpu_cache):
    def say(text: str, speed: float = 1.0) -> audiolib.Audio:
        with cpu_cache.engine("espeak:en-us") as e:
            return e.synthesize([SynthesisRequest(text, speed=speed)])[0]
    return say


def edited(a: audiolib.Audio, *, sr: int = 24000, gain_db: float = -2.0, snr_db: float = 35.0,
           mp3: bool = True, speed: float = 1.0) -> bytes:
    """Resampled, `speed` times faster (tempo and pitch), gain, noise at `snr_db`, MP3 round trip."""
    y = soxr.resample(a.samples, a.sample_rate * speed, sr).astype(np.float32) * 10 ** (gain_db / 20)
    rms = float(np.sqrt(np.mean(y ** 2)))
    y = y + np.random.default_rng(0).normal(0, rms * 10 ** (-snr_db / 20), len(y)).astype(np.float32)
    out = audiolib.Audio(y, sr)
    if mp3:
        out = audiolib.decode(audiolib.encode(out, "mp3"))
    return audiolib.encode(out, "wav")


def test_a_relay_is_caught_and_honest_miners_are_not(voice):
    prompts = PromptSource(["The museum opens early on weekends, so we should arrive before the crowds."],
                           generated_ratio=0.0, seed=3).issue(4)
    relay_uid, source_uid, framed_uid, twin_uid = 1, 2, 3, 4
    p = {u: prompts[i] for i, u in enumerate((relay_uid, source_uid, framed_uid, twin_uid))}
    logs = {f"hk{u}": PromptLog() for u in p}

    async def scenario() -> dict:
        answers = {}
        # the source answers the validator, and the relay's forwarded prompt (lightly edited text)
        answers[source_uid] = audiolib.encode(voice(p[source_uid].text), "wav")
        words = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                 "nine": "9", "ten": "10", "eleven": "11", "twelve": "12"}
        forwarded = " ".join(words.get(w, w) for w in p[relay_uid].text.replace(",", "").split())  # "seven" -> "7"
        assert forwarded != p[relay_uid].text
        rendered = voice(forwarded)
        await logs[f"hk{source_uid}"].record("5RelayKey", "tts", forwarded, audiolib.encode(rendered, "wav"))
        answers[relay_uid] = edited(rendered, speed=1.03)
        # a third party asks the source for the framed miner's prompt: the text reaches the log,
        # but the framed miner's answer is its own rendering (another voice speed), not the source's
        answers[framed_uid] = audiolib.encode(voice(p[framed_uid].text, speed=1.1), "wav")
        await logs[f"hk{source_uid}"].record("5Framer", "tts", p[framed_uid].text,
                                             audiolib.encode(voice(p[framed_uid].text, speed=0.9), "wav"))
        # the twin renders its own prompt with the same deterministic engine
        answers[twin_uid] = audiolib.encode(voice(p[twin_uid].text), "wav")
        client = LogClient(logs)
        stats = await find_relays(client, ME, [peer(u) for u in p],
                                  {u: issued(u, pr.text, pr.unique) for u, pr in p.items()}, answers,
                                  window_s=30, threshold=DEFAULT_THRESHOLD)
        return {"stats": stats, "calls": client.calls}

    out = asyncio.run(scenario())
    stats = out["stats"]
    assert [(f.uid, f.source_uid, f.caller) for f in stats.findings] == [(relay_uid, source_uid, "5RelayKey")]
    assert stats.findings[0].containment >= 0.5 and "relayed" in stats.findings[0].reason
    assert stats.candidates == 2  # the relay and the framed miner matched by text; only one by audio
    assert stats.requests == 4 and out["calls"] == 5  # one log request per miner, one fingerprint fetch
    assert stats.bytes > 0


def test_nothing_leaked_means_one_small_request_per_miner(voice):
    prompts = PromptSource([], seed=5).issue(3)
    logs = {f"hk{u}": PromptLog() for u in (1, 2, 3)}
    answers = {u: audiolib.encode(voice(prompts[u - 1].text), "wav") for u in (1, 2, 3)}

    async def scenario():
        for u in (1, 2, 3):  # each miner also served another validator's own prompt
            await logs[f"hk{u}"].record("5OtherValidator", "tts", f"An unrelated sentence number {u} about rain.",
                                        answers[u])
        client = LogClient(logs)
        return await find_relays(client, ME, [peer(u) for u in (1, 2, 3)],
                                 {u: issued(u, prompts[u - 1].text, prompts[u - 1].unique) for u in (1, 2, 3)},
                                 answers, window_s=30, threshold=DEFAULT_THRESHOLD), client.calls

    stats, calls = asyncio.run(scenario())
    assert stats.findings == [] and stats.candidates == 0 and calls == 3 and stats.entries == 3


def test_issued_prompts_are_unique_and_carry_their_unique_part():
    src = PromptSource(["One short pool sentence that is long enough."], generated_ratio=0.0, seed=1)
    ps = src.issue(50)
    assert len({p.text for p in ps}) == 50 and len({p.unique for p in ps}) == 50
    assert all(p.text.endswith(p.unique) and p.text.startswith("One short pool sentence") for p in ps)
    gen = PromptSource([], seed=2).issue(20)
    assert all(p.text == p.unique for p in gen) and len({p.text for p in gen}) == 20


def test_audio_comparisons_are_bounded_per_answer(voice):
    """Many logged prompts that look like one miner's (same template) cost at most TOP_K audio comparisons."""
    from audiosubnet.validator.relay import TOP_K

    (mine,) = PromptSource(["The library will stay open late during the week before the final exams."],
                           generated_ratio=0.0, seed=4).issue(1)
    logs = {"hk1": PromptLog(), "hk2": PromptLog()}
    answers = {1: audiolib.encode(voice(mine.text), "wav")}

    async def scenario():
        clip = audiolib.encode(voice("Something else entirely."), "wav")
        for k in range(10):  # another validator's prompts to miner 2, each sharing most of the tag's words
            await logs["hk2"].record(f"5Other{k}", "tts", f"{mine.unique[:-1]} and {k} more.", clip)
        return await find_relays(LogClient(logs), ME, [peer(1), peer(2)], {1: issued(1, mine.text, mine.unique)},
                                 answers, window_s=30, threshold=DEFAULT_THRESHOLD)

    stats = asyncio.run(scenario())
    assert stats.entries == 10 and stats.candidates == TOP_K and stats.findings == []


def test_a_rounds_shared_words_do_not_make_candidates():
    from audiosubnet import textsketch
    from audiosubnet.validator.relay import MIN_DISTINCTIVE, distinctive

    round_ = PromptSource([], seed=0).issue(32)
    others = PromptSource([], seed=99).issue(64)  # another validator's prompts, same generator
    full = {i: issued(i, p.text, p.unique) for i, p in enumerate(round_)}
    kept = distinctive(full)
    assert all(len(kept[i].unique) >= MIN_DISTINCTIVE or kept[i] is full[i] for i in full)
    alike = sum(textsketch.containment(full[i].unique, textsketch.sketch(o.text)) >= 0.5 for i in full for o in others)
    after = sum(textsketch.containment(kept[i].unique, textsketch.sketch(o.text)) >= 0.5 for i in kept for o in others)
    assert after < alike / 3, (alike, after)
    # a forwarded prompt still contains all of its own distinctive part
    assert all(textsketch.containment(kept[i].unique, textsketch.sketch(round_[i].text)) == 1.0 for i in kept)
