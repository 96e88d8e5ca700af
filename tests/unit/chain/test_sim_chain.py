"""SimChain: a SQLite subnet shared by processes, blocks from the clock, weights with a rate limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from audiosubnet.chain.base import Chain, RateLimitedError, blocks_until_weights_allowed, open_chain
from audiosubnet.chain.sim import SimChain
from audiosubnet.config import load_settings
from audiosubnet.errors import ChainError, NotRegisteredError, UsageError

HK = [f"5{'ABCDEFGH'[i]}{'x' * 46}" for i in range(8)]  # opaque ids: the simulator does not decode them


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sim(tmp_path, clock):
    chain = SimChain(tmp_path / "sim.db", create=True, clock=clock)
    chain.init(block_seconds=2.0, reset=True)
    chain.create_subnet(16, tempo=10, weights_rate_limit=5)
    return chain


def test_blocks_follow_the_clock(sim, clock):
    assert isinstance(sim, Chain)
    assert sim.block() == 0 and sim.block_time() == 2.0
    clock.t += 9.0
    assert sim.block() == 4


def test_register_publish_and_read(sim, tmp_path, clock):
    assert sim.register(16, HK[0], "5Ccold", stake=1000, validator_permit=True) == 0
    assert sim.register(16, HK[1]) == 1
    assert sim.register(16, HK[1], stake=3) == 1  # idempotent; updates stake
    assert sim.uid_of(16, HK[1]) == 1 and sim.uid_of(16, HK[2]) is None
    miner = SimChain(tmp_path / "sim.db", hotkey=HK[1], clock=clock)
    miner.publish_endpoint(16, "127.0.0.1", 9001)
    val, m = sim.peers(16)
    assert (val.validator_permit, val.stake, val.coldkey, val.endpoint) == (True, 1000.0, "5Ccold", None)
    assert (m.validator_permit, m.stake, m.endpoint, m.url) == (False, 3.0, "127.0.0.1:9001", "http://127.0.0.1:9001")
    stranger = SimChain(tmp_path / "sim.db", hotkey=HK[5], clock=clock)
    with pytest.raises(NotRegisteredError, match="not registered on netuid 16") as e:
        stranger.publish_endpoint(16, "127.0.0.1", 9002)
    assert "asn sim register" in e.value.hint
    with pytest.raises(ChainError, match="subnet 99 does not exist"):
        sim.peers(99)


def test_weights_are_recorded_with_their_block_and_rate_limited(sim, tmp_path, clock):
    sim.register(16, HK[0], stake=1000, validator_permit=True)
    sim.register(16, HK[1])
    sim.register(16, HK[2])
    val = SimChain(tmp_path / "sim.db", hotkey=HK[0], clock=clock)
    clock.t += 20  # block 10
    res = val.set_weights(16, {1: 3.0, 2: 1.0})
    assert res.block == 10 and res.uids == (1, 2) and res.weights == pytest.approx((0.75, 0.25))
    assert val.last_update(16, 0) == 10 and val.weights_rate_limit(16) == 5 and val.tempo(16) == 10
    clock.t += 4  # block 12: too soon
    assert blocks_until_weights_allowed(val, 16, 0) == 3
    with pytest.raises(RateLimitedError) as e:
        val.set_weights(16, {1: 1.0})
    assert e.value.retry_in_blocks == 3
    clock.t += 6  # block 15
    assert blocks_until_weights_allowed(val, 16, 0) == 0
    val.set_weights(16, {2: 1.0})
    (latest,) = sim.weights(16)
    assert latest.block == 15 and latest.weights == {2: 1.0}
    assert [r.block for r in sim.weights(16, latest=False)] == [15, 10]
    with pytest.raises(ChainError, match="not registered"):
        val.set_weights(16, {7: 1.0})
    with pytest.raises(ChainError, match="zero"):
        val.set_weights(16, {1: 0.0})


def test_open_chain_picks_the_simulator(tmp_path):
    settings = load_settings(**{"subnet.network": "sim", "subnet.sim_path": tmp_path / "x.db"})
    with pytest.raises(UsageError, match="no simulated chain") as e:
        open_chain(settings)
    assert "asn sim init" in e.value.hint
    chain = open_chain(settings, create=True)
    assert isinstance(chain, SimChain) and chain.path == tmp_path / "x.db"


_WORKER = textwrap.dedent("""
    import sys
    from audiosubnet.chain.sim import SimChain
    path, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    chain = SimChain(path)
    for i in range(n):
        hk = f"{prefix}{i:04d}"
        chain.register(16, hk, stake=1.0, validator_permit=True)
        SimChain(path, hotkey=hk).publish_endpoint(16, "127.0.0.1", 10000 + i)
        SimChain(path, hotkey=hk).set_weights(16, {0: 1.0})
    print("done")
""")


def test_two_processes_share_one_file(tmp_path):
    path = tmp_path / "shared.db"
    SimChain(path, create=True).create_subnet(16, weights_rate_limit=0)
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), prefix, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for prefix in ("5Aproc", "5Bproc")]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, errs) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "done", errs
    chain = SimChain(path)
    peers = chain.peers(16)
    assert len(peers) == 2 * n
    assert sorted(p.uid for p in peers) == list(range(2 * n))  # no uid handed out twice
    assert all(p.endpoint for p in peers)
    assert len(chain.weights(16)) == 2 * n
