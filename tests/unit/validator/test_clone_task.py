"""Voice-clone rounds: an unpredictable reference per round; real offline scoring (ASR, DNSMOS, d-vector)
ranks a miner that clones (the WORLD fallback engine) above one that ignores the reference, and a miner
that sends the reference back scores 0."""

from __future__ import annotations

import asyncio
import json

import pytest

from audiosubnet import audio as audiolib
from audiosubnet.config import ScoreSettings
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.scoring import speaker
from audiosubnet.scoring.pipeline import Scoring
from audiosubnet.validator.client import MinerClient
from audiosubnet.validator.loop import LoopConfig, Validator
from audiosubnet.validator.prompts import PromptSource
from audiosubnet.validator.tasks import CloneTask, TtsTask

pytestmark = pytest.mark.slow

PROMPT = "The old lighthouse keeper counted the ships before the storm arrived."
# The offline voice's noise, seeded: the WORLD fallback turns about 1 Piper draw in 200 into speech
# tiny.en cannot follow (WER > 0.5 -> scored 0), and one round must not hang on that draw.
SEED = 1


def test_references_are_fresh_plausible_and_different_voices(cpu_cache):
    task = CloneTask(cpu_cache, seed=7)
    refs = [task.make_reference() for _ in range(4)]
    assert len({r.text for r in refs}) == 4 and len({r.voice for r in refs}) == 4
    for r in refs:
        a = audiolib.decode(r.wav)
        assert 1.0 < a.duration < 20 and audiolib.rms_db(a.samples) > -35
        assert 5 <= len(r.text) / a.duration <= 30
    emb = speaker.embed([r.audio for r in refs], cache=cpu_cache)
    sims = emb @ emb.T
    assert float(sims[0, 1]) < 0.95 and float(sims[2, 3]) < 0.95  # not one fixed voice


def test_clone_round_scores_similarity_and_catches_the_reference_echo(tmp_path, cpu_cache, kit):
    async def clone_honestly(req):
        body = json.loads(await req.aread())
        import base64

        ref = audiolib.decode(base64.b64decode(body["reference_audio"]))
        with cpu_cache.engine("world") as e:
            out = e.synthesize([SynthesisRequest(body["text"], reference=ref, seed=SEED,
                                                 reference_text=body.get("reference_text"))])[0]
        return kit.respond(audiolib.encode(out, "wav"))

    async def ignore_reference(req):
        body = json.loads(await req.aread())
        with cpu_cache.engine("piper") as e:
            out = e.synthesize([SynthesisRequest(body["text"], seed=SEED)])[0]
        return kit.respond(audiolib.encode(out, "wav"))

    async def echo_reference(req):
        import base64

        body = json.loads(await req.aread())
        return kit.respond(base64.b64decode(body["reference_audio"]))

    world = kit.make_world(tmp_path, {"cloner": clone_honestly, "ignorer": ignore_reference, "echo": echo_reference})
    client = MinerClient(world["wallet"], timeout_s=60, transport=world["transport"])
    scoring = Scoring(ScoreSettings(preset="offline"), cache=cpu_cache)
    v = Validator(chain=world["chain"], own_hotkey=world["wallet"].hotkey, client=client, scoring=scoring,
                  prompts=PromptSource([PROMPT], generated_ratio=0.0, seed=3),
                  config=LoopConfig(netuid=kit.NETUID, alpha=1.0, timeout_s=60, clone_ratio=1.0, seed=5,
                                    set_weights=False),
                  state_dir=tmp_path / "state", tasks={"tts": TtsTask(), "clone": CloneTask(cpu_cache, seed=11)})
    report = asyncio.run(v.run_round())
    assert report.task == "clone"
    by = {o.uid: o for o in report.outcomes}
    cloner, ignorer, echo = (by[world["uids"][n]] for n in ("cloner", "ignorer", "echo"))
    assert echo.score == 0.0 and "reference" in (echo.reason or ""), echo
    assert cloner.metrics["speaker_sim"] > ignorer.metrics.get("speaker_sim", 0.0) + 0.1, (cloner, ignorer)
    assert cloner.score > ignorer.score and cloner.score > 0.2, (cloner, ignorer)
