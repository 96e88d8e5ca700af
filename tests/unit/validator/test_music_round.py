"""Music rounds in the validator loop: fake miners behind a signature-checking transport, the real music
scoring on a tiny random CLAP and a private reference folder, deadlines that follow the length asked for."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.chain.sim import SimChain
from audiosubnet.engines.registry import EngineCache
from audiosubnet.errors import ConfigError
from audiosubnet.scoring.base import Scorer
from audiosubnet.scoring.music import MusicScoring, MusicScoringConfig
from audiosubnet.scoring.pipeline import Scoring
from audiosubnet.validator.client import MinerClient
from audiosubnet.validator.loop import LoopConfig, Validator
from audiosubnet.validator.music_task import MusicTask, build_music_task, music_prompt
from audiosubnet.validator.prompts import PromptSource

pytestmark = pytest.mark.slow
SR = 32000


def melody(seed: int, seconds: float) -> Audio:
    rng = np.random.default_rng(seed)
    n = int(0.125 * SR)
    t = np.arange(n) / SR
    env = np.minimum(1.0, np.linspace(0, 8, n)) * np.linspace(1.0, 0.3, n)
    notes = [0.3 * env * np.sin(2 * np.pi * 220 * 2 ** (rng.integers(0, 24) / 12) * t)
             for _ in range(int(round(seconds / 0.125)))]
    return Audio(np.concatenate(notes).astype(np.float32), SR)


class NoSpeechScorer(Scorer):
    name = "none"
    metrics = ("wer",)

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"wer": 0.0} for _ in items]


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    for i in range(8):
        audiolib.write_atomic(d / f"r{i}.flac", audiolib.encode(melody(50 + i, 1.0), "flac"))
    return d


def behaviours(kit, asked: list):
    respond = kit.respond
    counter = [0]

    def duration(req) -> float:
        body = json.loads(req.content)
        asked.append((req.url.path, body))
        return float(body["duration_s"])

    async def composer(req):
        counter[0] += 1
        return respond(audiolib.encode(melody(counter[0], duration(req)), "wav"), sr=SR)

    async def short(req):  # stops at half the length: every shortfall costs
        return respond(audiolib.encode(melody(99, duration(req) / 2 + 0.125), "wav"), sr=SR)

    async def copier(req):  # the composer's first answer, again
        await asyncio.sleep(0.1)
        return respond(audiolib.encode(melody(1, duration(req)), "wav"), sr=SR)

    async def no_music(req):
        duration(req)
        import httpx

        return httpx.Response(501, json={"code": "not_implemented", "message": "no music model"})

    return dict(composer=composer, short=short, copier=copier, no_music=no_music)


def test_music_rounds_score_and_deadline(tmp_path, kit, tiny_clap, refs):
    asked: list = []
    world = kit.make_world(tmp_path, behaviours(kit, asked))
    scoring = MusicScoring(MusicScoringConfig(clap_model=str(tiny_clap), reference_dir=str(refs), min_window=2,
                                              decoys=("white noise", "a choir", "drums")),
                           EngineCache(budget_bytes=None))
    windows = tmp_path / "state" / "music_windows.npz"
    task = MusicTask(scoring, seed=3, durations=(1.0,), base_s=2.0, per_s=1.0, windows_path=windows)
    assert task.timeout_s(asyncio.run(task.prepare("x")), 12.0) == 12.0
    long = MusicTask(scoring, durations=(30.0,))
    assert long.timeout_s(asyncio.run(long.prepare("x")), 12.0) == 4.0 + 30.0  # the deadline follows the length
    client = MinerClient(world["wallet"], timeout_s=2.0, transport=world["transport"], max_bytes=4 * 2**20)
    chain = SimChain(world["path"], hotkey=world["wallet"].hotkey, clock=lambda: world["now"][0])
    v = Validator(chain=chain, own_hotkey=world["wallet"].hotkey, client=client,
                  scoring=Scoring(scorers=[NoSpeechScorer], cache=EngineCache(None)), prompts=PromptSource(["Hello there."], seed=1),
                  config=LoopConfig(netuid=kit.NETUID, alpha=0.5, timeout_s=2.0, round_interval_s=0.0,
                                    music_ratio=1.0),
                  state_dir=tmp_path / "state", tasks={"music": task})
    reports = [asyncio.run(v.run_round()) for _ in range(2)]
    assert all(r.task == "music" for r in reports)
    assert {path for path, _ in asked} == {"/v1/music"} and all(b["duration_s"] == 1.0 for _, b in asked)
    assert all(len(b["prompt"]) <= 256 and "with" in b["prompt"] for _, b in asked)
    by = {o.uid: o for o in reports[-1].outcomes}
    uid = world["uids"]
    composer, short, copier, none = (by[uid[k]] for k in ("composer", "short", "copier", "no_music"))
    assert composer.status == "ok" and composer.score > 0
    assert composer.metrics["window"] == 2 and composer.metrics["quality"] != 0.5  # the window is scored
    assert short.status == "ok" and short.metrics["duration_factor"] == pytest.approx(0.625)
    assert short.score < composer.score
    assert none.score == 0.0 and none.status != "ok"
    restarted = MusicScoring(MusicScoringConfig(clap_model=str(tiny_clap)), EngineCache(budget_bytes=None))
    MusicTask(restarted, windows_path=windows)  # a restart reloads every miner's quality window
    composer_hk = next(o.hotkey for o in reports[-1].outcomes if o.uid == uid["composer"])
    np.testing.assert_allclose(restarted.windows.get(composer_hk), scoring.windows.get(composer_hk))
    first = {o.uid: o for o in reports[0].outcomes}
    assert first[uid["copier"]].score == 0.0 and "copy" in first[uid["copier"]].reason


def test_music_prompts_vary():
    import random

    rng = random.Random(0)
    assert len({music_prompt(rng) for _ in range(200)}) > 190


def test_build_music_task_refuses_without_references_or_clap(tmp_path, refs):
    from types import SimpleNamespace

    from audiosubnet.errors import ModelNotDownloadedError

    cache = EngineCache(budget_bytes=None)
    v = SimpleNamespace(music_references=None, music_clap_model="laion/larger_clap_music", music_window=8, seed=0)
    with pytest.raises(ConfigError, match="reference folder"):
        build_music_task(v, cache)
    v.music_references = refs
    with pytest.raises(ModelNotDownloadedError) as e:
        build_music_task(v, cache)
    assert "asn models pull clap:laion/larger_clap_music" in e.value.hint
