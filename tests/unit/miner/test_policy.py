"""CallerPolicy: decisions from a snapshot, background refresh that survives chain failures, token buckets."""

from __future__ import annotations

import asyncio

from audiosubnet.chain.base import Coldkey, Hotkey, Peer, Uid
from audiosubnet.errors import ChainError
from audiosubnet.miner.policy import CallerPolicy, PolicyConfig


def _peer(uid: int, hk: str, permit: bool, stake: float) -> Peer:
    return Peer(Uid(uid), Hotkey(hk), Coldkey("c"), None, permit, stake)


class ScriptedChain:
    network = "scripted"

    def __init__(self):
        self.answers: list = []
        self.calls = 0

    def peers(self, netuid):
        self.calls += 1
        a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, Exception):
            raise a
        return a


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def test_decisions_and_background_refresh():
    chain = ScriptedChain()
    chain.answers = [[_peer(0, "val", True, 50)], ChainError("node down"),
                     [_peer(0, "val", True, 50), _peer(1, "new", True, 80)]]
    policy = CallerPolicy(chain, PolicyConfig(min_stake=10, refresh_s=0.01, allow=frozenset({"friend"}),
                                              deny=frozenset({"val2"})))
    assert not policy.loaded
    policy.refresh()
    assert policy.admit("val").allowed and policy.admit("friend").reason == "allow_list"
    assert policy.admit("new").reason == "not_registered" and policy.admit("val2").reason == "denied"

    async def run_a_bit():
        task = asyncio.create_task(policy.run())
        while chain.calls < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run_a_bit())
    assert policy.admit("new").allowed  # picked up in the background, after a failed refresh
    assert policy.refresh_failures == 0


def test_permit_and_stake():
    chain = ScriptedChain()
    chain.answers = [[_peer(0, "miner", False, 1e6), _peer(1, "poor", True, 1.0)]]
    policy = CallerPolicy(chain, PolicyConfig(min_stake=5))
    policy.refresh()
    assert policy.admit("miner").reason == "no_permit" and policy.admit("poor").reason == "low_stake"
    lax = CallerPolicy(chain, PolicyConfig(min_stake=0, require_permit=False))
    lax.refresh()
    assert lax.admit("miner").allowed


def test_token_bucket_per_caller():
    clock = Clock()
    policy = CallerPolicy(ScriptedChain(), PolicyConfig(rate_limit_per_min=60, burst_s=2), clock=clock)
    assert policy.rate("a").allowed and policy.rate("a").allowed  # burst of 2
    d = policy.rate("a")
    assert not d.allowed and d.reason == "rate_limited" and d.retry_after == 1
    assert policy.rate("b").allowed
    clock.t += 1.0
    assert policy.rate("a").allowed and not policy.rate("a").allowed
    assert CallerPolicy(ScriptedChain(), PolicyConfig(rate_limit_per_min=0)).rate("x").allowed
