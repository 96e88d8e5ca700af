"""Who may call the miner, decided from a metagraph snapshot that a background task refreshes.

After btauth/1 has proven *which* hotkey sent a request, `CallerPolicy.admit` decides whether it may
(403 otherwise), in this order:
  1. a hotkey on the deny list is refused;
  2. a hotkey on the allow list is admitted as is (your own test validator, say), without the checks below;
  3. a snapshot older than `max_age_s` admits nobody else (it fails closed: `stale_metagraph`, answered 503);
  4. the hotkey must be registered on the netuid, hold a validator permit, and have stake >= min_stake.
Then `CallerPolicy.rate` applies a per-caller token bucket (429 with Retry-After otherwise).

The chain is never read on the request path: `refresh()` (blocking) replaces the snapshot, and `run()`
calls it every `refresh_s` seconds in a worker thread. A failed refresh keeps the previous snapshot until it is
`max_age_s` old; from then on requests are refused (one error line when that starts, one when a refresh succeeds
again). A validator deregistered on the chain is refused from the next successful refresh on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from audiosubnet.chain.base import Chain, Peer
from audiosubnet.config import MineSettings, SubnetSettings, defaults

log = logging.getLogger(__name__)


_MINE = defaults(MineSettings)  # one source of defaults: the settings section


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's view of the `mine` settings section (`PolicyConfig.of`)."""

    netuid: int = defaults(SubnetSettings)["netuid"]
    min_stake: float = 0.0
    require_permit: bool = _MINE["require_validator_permit"]
    allow: frozenset[str] = frozenset(_MINE["allow_hotkeys"])
    deny: frozenset[str] = frozenset(_MINE["deny_hotkeys"])
    rate_limit_per_min: float = _MINE["rate_limit_per_min"]  # 0: no per-caller limit
    burst_s: float = 10.0  # a caller may burst this many seconds' worth of requests
    refresh_s: float = _MINE["metagraph_refresh_s"]
    max_age_s: float = _MINE["metagraph_max_age_s"]  # an older snapshot admits nobody but the allow list (0: never)

    @classmethod
    def of(cls, m: MineSettings, netuid: int, min_stake: float) -> PolicyConfig:
        return cls(netuid=netuid, min_stake=min_stake, require_permit=m.require_validator_permit,
                   allow=frozenset(m.allow_hotkeys), deny=frozenset(m.deny_hotkeys),
                   rate_limit_per_min=m.rate_limit_per_min, refresh_s=m.metagraph_refresh_s,
                   max_age_s=m.metagraph_max_age_s)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # ok | allow_list | denied | stale_metagraph | not_registered | no_permit | low_stake | rate_limited
    message: str = ""
    retry_after: float = 0.0


_OK = Decision(True, "ok")

FINNEY_MIN_STAKE = 1000.0  # the default `--min-validator-stake` on finney (and any network not named below)
_NO_STAKE_NETWORKS = ("sim", "test", "local")


def default_min_stake(network: str) -> float:
    """The stake a validator needs by default: 1000 on finney/mainnet; 0 on test, local and sim, whose stakes
    are play money (a simulated subnet registers validators with whatever stake its test gives them)."""
    name = (network or "").strip().lower()
    if name.startswith("sim") or name in _NO_STAKE_NETWORKS or "127.0.0.1" in name or "localhost" in name:
        return 0.0
    return FINNEY_MIN_STAKE


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp = tokens, stamp


class Admission:
    """Admission from a metagraph snapshot (rules 1-4 above); where the snapshot comes from is the subclass's:
    `CallerPolicy` reads the chain, a worker's `workers.HubPolicy` copies the hub's."""

    def __init__(self, config: PolicyConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._peers: dict[str, Peer] = {}
        self._loaded_at: float | None = None
        self._block: int | None = None
        self._stale_logged = False

    # ---- the snapshot --------------------------------------------------------------------------------
    def update(self, peers: Iterable[Peer], block: int | None = None, age_s: float | None = 0.0) -> None:
        """Replace the snapshot; `age_s`: how old it already is (a copy of another process's snapshot)."""
        self._peers = {p.hotkey: p for p in peers}
        self._loaded_at = None if age_s is None else self._clock() - age_s
        self._block = block
        if self._stale_logged:
            log.warning("metagraph refreshed; serving validators again")
            self._stale_logged = False

    @property
    def snapshot_age_s(self) -> float | None:
        return None if self._loaded_at is None else self._clock() - self._loaded_at

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def peer(self, hotkey: str) -> Peer | None:
        return self._peers.get(hotkey)

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def snapshot(self) -> tuple[list[Peer], float | None]:
        """The peers and the snapshot's age (what a worker process copies)."""
        return self.peers(), self.snapshot_age_s

    # ---- decisions -----------------------------------------------------------------------------------
    def admit(self, hotkey: str) -> Decision:
        c = self.config
        if hotkey in c.deny:
            return Decision(False, "denied", "this hotkey is on the miner's deny list")
        if hotkey in c.allow:
            return Decision(True, "allow_list")
        age = self.snapshot_age_s
        if c.max_age_s > 0 and (age is None or age > c.max_age_s):
            if not self._stale_logged:
                self._stale_logged = True
                log.error("the metagraph snapshot is %s (limit %.0f s): refusing every caller not on the allow "
                          "list until a refresh succeeds (see the refresh errors above)",
                          "missing" if age is None else f"{age:.0f} s old", c.max_age_s)
            return Decision(False, "stale_metagraph", "the miner's view of the metagraph is out of date; retry "
                                                      "later")
        p = self._peers.get(hotkey)
        if p is None:
            return Decision(False, "not_registered", f"hotkey is not registered on netuid {c.netuid}")
        if c.require_permit and not p.validator_permit:
            return Decision(False, "no_permit", f"uid {p.uid} has no validator permit")
        if p.stake < c.min_stake:
            return Decision(False, "low_stake", f"uid {p.uid} has stake {p.stake:g}, below the miner's minimum "
                                                f"{c.min_stake:g}")
        return _OK


class CallerPolicy(Admission):
    """The main process's policy: the snapshot read from the chain (`refresh`, `run`), the rate limits (`take`)."""

    def __init__(self, chain: Chain, config: PolicyConfig, *, clock: Callable[[], float] = time.monotonic):
        super().__init__(config, clock=clock)
        self.chain = chain
        self._buckets: dict[str, _Bucket] = {}
        self.refresh_failures = 0

    def refresh(self) -> int:
        """Blocking: read the metagraph and replace the snapshot. Returns the number of neurons."""
        peers = self.chain.peers(self.config.netuid)
        self.update(peers)
        validators = sum(1 for p in peers if p.validator_permit)
        log.debug("metagraph of netuid %d: %d neurons, %d validators", self.config.netuid, len(peers), validators)
        return len(peers)

    async def run(self) -> None:
        """Refresh forever (cancel to stop). Errors are logged in one line; the old snapshot stays."""
        while True:
            await asyncio.sleep(self.config.refresh_s)
            try:
                await asyncio.to_thread(self.refresh)
                self.refresh_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.refresh_failures += 1
                log.warning("metagraph refresh failed (%d in a row), keeping the snapshot from %.0f s ago: %s",
                            self.refresh_failures, self.snapshot_age_s or 0.0, " ".join(str(e).split())[:200])

    async def take(self, hotkey: str) -> Decision:
        """`rate` as the HTTP edge calls it (a worker process asks the main process: miner/workers.py)."""
        return self.rate(hotkey)

    def rate(self, hotkey: str) -> Decision:
        """Take one token from the caller's bucket."""
        per_min = self.config.rate_limit_per_min
        if per_min <= 0:
            return _OK
        rate = per_min / 60.0
        capacity = max(1.0, rate * self.config.burst_s)
        now = self._clock()
        b = self._buckets.get(hotkey)
        if b is None:
            b = self._buckets[hotkey] = _Bucket(capacity, now)
        b.tokens = min(capacity, b.tokens + (now - b.stamp) * rate)
        b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return _OK
        wait = (1.0 - b.tokens) / rate
        return Decision(False, "rate_limited", f"over {per_min:g} requests per minute", float(math.ceil(wait)))
