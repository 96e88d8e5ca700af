"""The validator loop in one process: a simulated chain, fake miners behind an httpx transport
(honest, silent, hanging, 1 GB, slow drip, NaN, garbage, 500), real sanity checks, a fast stand-in for the
model scorers. Relays are caught with real miner apps in test_relay.py; the multi-process version is
tests/e2e/test_validate_e2e.py."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiosubnet import audio as audiolib
from audiosubnet.chain.base import RateLimitedError
from audiosubnet.chain.bittensor import create_wallet
from audiosubnet.chain.sim import SimChain
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.scoring.base import Scorer
from audiosubnet.scoring.pipeline import Scoring
from audiosubnet.validator.client import MinerClient
from audiosubnet.validator.loop import LoopConfig, Validator
from audiosubnet.validator.prompts import PromptSource

NETUID = 16
PROMPT = "The old lighthouse keeper counted forty two ships before the storm arrived."
OTHER = "Bananas are an excellent source of potassium and fibre for hungry hikers."


class InstantScorer(Scorer):
    """Stands in for ASR + MOS (their real tests live in tests/unit/scoring): every clip that passed the
    sanity and duplicate checks gets WER 0 and MOS 4.5, so what is left to test is the loop."""

    name = "instant"
    metrics = ("wer", "utmos")

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True

    def score(self, items):
        return [{"wer": 0.0, "utmos": 4.5} for _ in items]


def wav(a: audiolib.Audio) -> bytes:
    return audiolib.encode(a, "wav")


@pytest.fixture(scope="module")
def clips(cpu_cache):
    """Real speech for the fake miners: distinct voices reading the prompt, and another text."""
    out = {}
    with cpu_cache.engine("piper") as e:
        out["piper"] = e.synthesize([SynthesisRequest(PROMPT)])[0]
    with cpu_cache.engine("espeak:en-us") as e:
        out["espeak"], out["espeak_gb"], out["other"] = e.synthesize(
            [SynthesisRequest(PROMPT), SynthesisRequest(PROMPT, voice="en-gb"), SynthesisRequest(OTHER)])
    return out


def make_behaviours(clips, kit):
    respond, AsyncChunks = kit.respond, kit.AsyncChunks
    piper = clips["piper"]

    async def honest_piper(req):
        return respond(wav(piper))

    async def honest_espeak(req):
        return respond(wav(clips["espeak"]))

    async def honest_gb(req):
        return respond(wav(clips["espeak_gb"]))

    async def silent(req):
        return respond(wav(audiolib.Audio(np.zeros(22050 * 3, np.float32), 22050)))

    async def hang(req):
        await asyncio.sleep(3600)

    async def huge(req):
        async def gen():
            chunk = b"\0" * 2**20
            for _ in range(1024):  # 1 GB if nobody stops reading
                yield chunk
        return respond(b"", stream=AsyncChunks(gen))

    async def drip(req):
        async def gen():
            for _ in range(10_000):
                await asyncio.sleep(0.2)
                yield b"R"
        return respond(b"", stream=AsyncChunks(gen))

    async def nan(req):
        buf = io.BytesIO()
        x = np.full(22050 * 2, np.nan, np.float32)
        sf.write(buf, x, 22050, format="WAV", subtype="FLOAT")
        return respond(buf.getvalue())

    async def garbage(req):
        return respond(np.random.default_rng(0).bytes(50_000))

    async def boom(req):
        return httpx.Response(500, json={"code": "internal", "message": "oops"})

    return dict(honest_piper=honest_piper, honest_espeak=honest_espeak, honest_gb=honest_gb,
                silent=silent, hang=hang, huge=huge, drip=drip, nan=nan, garbage=garbage, boom=boom)


@pytest.fixture
def world(tmp_path, clips, kit):
    return kit.make_world(tmp_path, make_behaviours(clips, kit))


def make_validator(world, tmp_path, **cfg):
    client = MinerClient(world["wallet"], timeout_s=2.0, transport=world["transport"], max_bytes=4 * 2**20)
    scoring = Scoring(scorers=[InstantScorer], cache=ModelCache(None, "cpu", "float32"))
    config = LoopConfig(**{"netuid": NETUID, "alpha": 0.5, "timeout_s": 2.0, "round_interval_s": 0.0,
                           "weights_every": 2, **cfg})
    chain = SimChain(world["path"], hotkey=world["wallet"].hotkey, clock=lambda: world["now"][0])
    return Validator(chain=chain, own_hotkey=world["wallet"].hotkey, client=client, scoring=scoring,
                     prompts=PromptSource([PROMPT], generated_ratio=0.0, seed=1), config=config,
                     state_dir=tmp_path / "state")


def test_a_round_ranks_honest_miners_and_floors_every_cheat(world, tmp_path):
    v = make_validator(world, tmp_path)
    t0 = time.perf_counter()
    report = asyncio.run(v.run_round())
    elapsed = time.perf_counter() - t0
    uids = world["uids"]
    by = {o.uid: o for o in report.outcomes}
    assert len(report.outcomes) == len(uids)  # the validator itself is not queried
    for name in ("honest_piper", "honest_espeak", "honest_gb"):
        assert by[uids[name]].score > 0.9, (name, by[uids[name]])
    for name in ("silent", "hang", "huge", "drip", "nan", "garbage", "boom"):
        assert by[uids[name]].score == 0.0, (name, by[uids[name]])
    assert by[uids["hang"]].status == "timeout" and by[uids["drip"]].status == "timeout"
    assert by[uids["huge"]].status == "too_large"
    # every miner was given a prompt of its own, and the relay check asked every miner's seen log
    assert len(set(report.prompts.values())) == len(uids) and all(PROMPT in t for t in report.prompts.values())
    assert report.relay is not None and report.relay.requests == len(uids) and report.relay.findings == []
    assert by[uids["nan"]].status == "zero" and by[uids["garbage"]].status == "zero"
    # concurrent queries: about the slowest allowed timeout plus scoring, not the sum of the timeouts
    assert elapsed < 2.0 + report.score_s + 3.0, elapsed
    assert report.query_s < 3.5


def test_state_persists_and_restart_resumes(world, tmp_path):
    v = make_validator(world, tmp_path)
    asyncio.run(v.run_round())
    emas = {u: r.ema for u, r in v.state.miners.items()}
    assert (tmp_path / "state" / "state.json").exists() and (tmp_path / "state" / "fingerprints.bin").exists()
    v2 = make_validator(world, tmp_path)
    assert v2.state.round == 1 and {u: r.ema for u, r in v2.state.miners.items()} == emas
    assert len(v2.scoring.history) == len(v.scoring.history) > 0
    asyncio.run(v2.run_round())
    piper = world["uids"]["honest_piper"]
    assert v2.state.miners[piper].ema > emas[piper]
    # replaying last round's answer is caught by the history, not only copies within a round
    assert v2.state.miners[world["uids"]["honest_piper"]].last_score > 0.9


def test_weights_every_n_rounds_exactly_within_the_rate_limit(world, tmp_path):
    v = make_validator(world, tmp_path)  # weights_every=2; the chain allows one call per 5 blocks
    r1 = asyncio.run(v.run_round())
    assert r1.weights_block is not None  # the first round of a fresh validator: nothing set yet
    w = world["chain"].weights(NETUID)
    assert len(w) == 1 and set(w[0].weights) == {world["uids"][n] for n in ("honest_piper", "honest_espeak",
                                                                               "honest_gb")}
    world["now"][0] += 12 * 6
    r2 = asyncio.run(v.run_round())  # one round since: not due, however many blocks passed
    assert r2.weights_block is None and r2.weights_error is None
    r3 = asyncio.run(v.run_round())  # due: two rounds since r1, and 6 blocks (past the chain's limit of 5)
    assert r3.weights_block is not None
    r4 = asyncio.run(v.run_round())
    assert r4.weights_block is None
    r5 = asyncio.run(v.run_round())  # due, same block as r3: the chain's rate limit says wait, retried next round
    assert r5.weights_block is None and "rate limited" in (r5.weights_error or "")
    world["now"][0] += 12 * 6
    r6 = asyncio.run(v.run_round())
    assert r6.weights_block is not None and len(world["chain"].weights(NETUID, latest=False)) == 3
    r7 = asyncio.run(v.run_round())  # counted from r6, the last success
    assert r7.weights_block is None


def test_weights_every_round_and_after_the_last_round_of_a_run(world, tmp_path):
    v = make_validator(world, tmp_path, weights_every=1)
    for _ in range(3):
        world["now"][0] += 12 * 6  # past the chain's rate limit each time
        assert asyncio.run(v.run_round()).weights_block is not None
    v = make_validator(world, tmp_path / "b", weights_every=100)
    reports = []

    def next_round(r):
        reports.append(r)
        world["now"][0] += 12 * 6  # past the chain's rate limit before each round

    world["now"][0] += 12 * 6
    v.on_round = next_round
    asyncio.run(v.run(rounds=3))
    assert [r.weights_block is not None for r in reports] == [True, False, True]  # first, then the run's last


def test_a_chain_error_while_setting_weights_is_one_line_and_retried(world, tmp_path, caplog, monkeypatch):
    v = make_validator(world, tmp_path)
    calls = []

    def refuse(netuid, weights, **kw):
        calls.append(1)
        raise RateLimitedError("SettingWeightsTooFast: too soon") if len(calls) == 1 else OSError("node went away")

    monkeypatch.setattr(v.chain, "set_weights", refuse)
    r1 = asyncio.run(v.run_round())
    r2 = asyncio.run(v.run_round())
    assert r1.weights_error and r2.weights_error and len(calls) == 2
    assert v.state.last_weight_block is None  # nothing recorded: retried next round
    assert "node went away" in caplog.text and "Traceback" not in caplog.text


def test_fair_rotation_queries_everyone_equally(world, tmp_path):
    v = make_validator(world, tmp_path, miners_per_round=4)
    n = len(world["uids"])
    rounds = n + 3  # not a whole number of cycles
    for _ in range(rounds):
        asyncio.run(v.run_round())
    counts = [r.queries for u, r in v.state.miners.items() if u in world["uids"].values()]
    assert max(counts) - min(counts) <= 1 and sum(counts) == 4 * rounds, counts


def test_hotkey_change_resets_the_uid(world, tmp_path):
    v = make_validator(world, tmp_path)
    asyncio.run(v.run_round())
    uid = world["uids"]["honest_piper"]
    assert v.state.miners[uid].ema > 0
    chain = world["chain"]
    old = next(p.hotkey for p in chain.peers(NETUID) if p.uid == uid)
    chain.deregister(NETUID, old)
    newcomer = create_wallet("newcomer", "default", tmp_path / "w")
    assert chain.register(NETUID, newcomer.hotkey) == uid  # the freed slot
    asyncio.run(v.refresh_peers(force=True))
    assert v.state.miners[uid].ema == 0.0 and v.state.miners[uid].hotkey == newcomer.hotkey


def test_deny_list_and_validators_are_not_queried(world, tmp_path):
    chain = world["chain"]
    deny = next(p.hotkey for p in chain.peers(NETUID) if p.uid == world["uids"]["boom"])
    v = make_validator(world, tmp_path, deny_hotkeys=(deny,))
    asyncio.run(v.refresh_peers(force=True))
    chosen = {int(p.uid) for p in v.select()}
    assert world["uids"]["boom"] not in chosen and len(chosen) == len(world["uids"]) - 1


def test_no_miner_serving_yet_is_not_a_round(world, tmp_path):
    from audiosubnet.validator.loop import NoMinersYet

    every = tuple(p.hotkey for p in world["chain"].peers(NETUID))
    v = make_validator(world, tmp_path, deny_hotkeys=every, round_interval_s=1.0)
    with pytest.raises(NoMinersYet):
        asyncio.run(v.run_round())

    async def wait_then_stop():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        await v.run(rounds=3, stop=stop)

    asyncio.run(wait_then_stop())
    assert v.state.round == 0 and v.state.last_weight_round is None  # waited: no round, no weights
    v.cfg.deny_hotkeys = ()  # a miner appears: the next call runs a round
    assert asyncio.run(v.run_round()).outcomes
