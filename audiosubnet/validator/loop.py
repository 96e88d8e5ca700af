"""The validator loop: one round at a time, with the chain, clock, client and scoring injected.

A round: refresh the metagraph (on its own interval) -> choose miners (fair rotation) -> draw a
task and a prompt of its own for every chosen miner (and a seed) -> query every chosen miner at once
(signed, capped in time and bytes) -> ask every miner's seen log whose prompts reached it from other
callers: a miner whose answer is another miner's rendering of its prompt is a relay and scores 0
(validator/relay.py) -> score the other answers in one batch -> fold scores into per-uid moving
averages (failures count 0) -> persist -> set weights every N rounds within the chain's rate limit
(and after the last round of a run with a round count).

Nothing a miner does can stall or crash a round: the client never raises for a miner, scoring
never raises for an item, and a chain error while setting weights is one log line and a retry
at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosubnet.chain.base import Chain, Peer, RateLimitedError, blocks_until_weights_allowed
from audiosubnet.config import ValidateSettings, defaults
from audiosubnet.errors import AsnError, ChainError
from audiosubnet.scoring.fingerprint import FingerprintHistory
from audiosubnet.validator.client import MinerClient, MinerResult, scaled_timeout
from audiosubnet.validator.prompts import Prompt, PromptSource
from audiosubnet.validator.relay import RelayStats, find_relays, issued
from audiosubnet.validator.state import ValidatorState
from audiosubnet.validator.tasks import Task, TtsTask

log = logging.getLogger(__name__)


class NoMinersYet(Exception):
    """No registered miner serves an endpoint yet: nothing to query, so no round (and no weights)."""


# ---- reports -----------------------------------------------------------------------------
@dataclass
class Outcome:
    uid: int
    hotkey: str
    status: str  # ok | timeout | connect | http | too_large | protocol | bad_endpoint | zero | relay
    score: float
    ema: float
    latency_s: float | None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    audio: bytes | None = None  # kept for optional sample logging, dropped after the round


@dataclass
class RoundReport:
    round: int
    block: int
    task: str
    prompts: dict[int, str]  # uid -> the prompt it was given
    outcomes: list[Outcome]
    query_s: float
    score_s: float
    total_s: float
    weights_block: int | None = None
    weights_error: str | None = None
    weights: dict[int, float] = field(default_factory=dict)
    relay: RelayStats | None = None

    @property
    def prompt(self) -> str:
        """One of the round's prompts (for captions)."""
        return next(iter(self.prompts.values()), "")


_V = defaults(ValidateSettings)  # one source of defaults: the settings section


@dataclass
class LoopConfig:
    """The loop's view of the `validator` settings section (`validator/app.py:loop_config`); its defaults are
    that section's."""

    netuid: int
    alpha: float = _V["alpha"]
    timeout_s: float = _V["timeout_s"]
    round_interval_s: float = _V["round_interval_s"]
    weights_every: int = _V["weights_every"]  # rounds
    metagraph_refresh_s: float = _V["metagraph_refresh_s"]
    miners_per_round: int = _V["miners_per_round"]  # 0: every queryable miner
    include_validators: bool = _V["include_validators"]
    deny_hotkeys: tuple[str, ...] = tuple(_V["deny_hotkeys"])
    clone_ratio: float = _V["clone_ratio"]  # with a clone task in `tasks`
    music_ratio: float = _V["music_ratio"]
    set_weights: bool = _V["set_weights"]
    seed: int | None = _V["seed"]
    relay_check: bool = _V["relay_check"]
    relay_timeout_s: float = 3.0


class Validator:
    def __init__(self, *, chain: Chain, own_hotkey: str, client: MinerClient, scoring: Any,
                 prompts: PromptSource, config: LoopConfig, state_dir: Path,
                 tasks: dict[str, Task] | None = None, clock: Callable[[], float] = time.monotonic,
                 on_round: Callable[[RoundReport], None] | None = None):
        self.chain, self.own_hotkey, self.client = chain, own_hotkey, client
        self.scoring, self.prompts, self.cfg = scoring, prompts, config
        self.tasks: dict[str, Task] = tasks or {"tts": TtsTask()}
        self.clock, self.on_round = clock, on_round
        self.rng = random.Random(config.seed)
        self.state_dir = Path(state_dir)
        self.state_path = self.state_dir / "state.json"
        self.history_path = self.state_dir / "fingerprints.bin"
        self.state = ValidatorState.load(self.state_path, scoring.version)
        self._load_history()
        self.peers: list[Peer] = []
        self._peers_at = float("-inf")
        self._last_relay: RelayStats | None = None
        self.own_uid: int | None = None

    # ---- state ---------------------------------------------------------------------------
    def _load_history(self) -> None:
        if not self.history_path.exists():
            return
        try:
            self.scoring.history = FingerprintHistory.from_bytes(self.history_path.read_bytes())
        except Exception as e:
            log.warning("fingerprint history %s is unreadable (%s): starting a new one", self.history_path, e)

    def save(self) -> None:
        from audiosubnet.audio import write_atomic

        self.state.save(self.state_path)
        write_atomic(self.history_path, self.scoring.history.to_bytes())

    # ---- metagraph and selection -------------------------------------------------------------
    async def refresh_peers(self, force: bool = False) -> None:
        if not force and self.clock() - self._peers_at < self.cfg.metagraph_refresh_s and self.peers:
            return
        try:
            peers = await asyncio.to_thread(self.chain.peers, self.cfg.netuid)
        except ChainError as e:
            if not self.peers:
                raise
            log.warning("metagraph refresh failed (%s); keeping the last one", e)
            return
        self.peers = peers
        self._peers_at = self.clock()
        self.own_uid = next((int(p.uid) for p in peers if p.hotkey == self.own_hotkey), None)
        reset = self.state.sync_hotkeys({int(p.uid): p.hotkey for p in peers})
        if reset:
            log.info("hotkey changed on uids %s: their scores restart", reset)

    def queryable(self) -> list[Peer]:
        deny = set(self.cfg.deny_hotkeys)
        return [p for p in self.peers
                if p.endpoint and p.hotkey != self.own_hotkey and p.hotkey not in deny
                and (self.cfg.include_validators or not p.validator_permit)]

    def select(self) -> list[Peer]:
        """Fair rotation: a queue. The miners chosen longest ago go first (never-chosen ones at random),
        and the chosen go to the back, so over time every miner is queried equally often (within one)."""
        peers = self.queryable()
        k = self.cfg.miners_per_round or len(peers)

        def turn(p: Peer) -> int:
            rec = self.state.miners.get(int(p.uid))
            return rec.last_turn if rec else -1

        chosen = sorted(peers, key=lambda p: (turn(p), self.rng.random()))[:k]
        self.state.take_turns([int(p.uid) for p in chosen])
        return sorted(chosen, key=lambda p: int(p.uid))

    def choose_task(self) -> Task:
        if "music" in self.tasks and self.rng.random() < self.cfg.music_ratio:
            return self.tasks["music"]
        if "clone" in self.tasks and self.rng.random() < self.cfg.clone_ratio:
            return self.tasks["clone"]
        return self.tasks["tts"]

    # ---- one round ---------------------------------------------------------------------------
    async def run_round(self, *, final: bool = False) -> RoundReport:
        t0 = time.perf_counter()
        await self.refresh_peers()
        if not self.queryable():  # miners publish their endpoint once their model is loaded: look again
            await self.refresh_peers(force=True)
            if not self.queryable():
                raise NoMinersYet(f"no miner on netuid {self.cfg.netuid} serves an endpoint yet "
                                  f"({len(self.peers)} registered)")
        block = await asyncio.to_thread(self.chain.block)
        chosen = self.select()
        task = self.choose_task()
        prompts = {int(p.uid): pr for p, pr in zip(chosen, self.prompts.issue(len(chosen)), strict=True)}
        seeds = {uid: self.rng.getrandbits(31) for uid in prompts}
        material = await task.prepare(next(iter(prompts.values())).text if prompts else "")

        def deadline(text: str) -> float:
            timeout = min(self.cfg.timeout_s, scaled_timeout(text))
            if hasattr(task, "timeout_s"):  # music: the deadline follows the length asked for
                timeout = task.timeout_s(material, timeout)
            return timeout

        results: list[MinerResult] = list(await asyncio.gather(
            *(task.query(self.client, p, prompts[int(p.uid)].text, material, deadline(prompts[int(p.uid)].text),
                         seed=seeds[int(p.uid)])
              for p in chosen)))
        answered = [(p, r) for p, r in zip(chosen, results, strict=True) if r.ok]
        relays = await self.check_relays(prompts, answered, time.perf_counter() - t0)
        t_query = time.perf_counter() - t0
        scored_pairs = [(p, r) for p, r in answered if int(p.uid) not in relays]
        items = [task.item(p, prompts[int(p.uid)].text, material, r) for p, r in scored_pairs]
        t1 = time.perf_counter()
        score_items = getattr(task, "score", None) or self.scoring.score  # music scores its own items
        scored = await asyncio.to_thread(score_items, items) if items else []
        t_score = time.perf_counter() - t1
        by_uid = {int(p.uid): s for (p, _), s in zip(scored_pairs, scored, strict=True)}

        outcomes = []
        metrics: dict[str, float]
        for p, r in zip(chosen, results, strict=True):
            uid = int(p.uid)
            s = by_uid.get(uid)
            if uid in relays:
                score, status, reason, metrics = 0.0, "relay", relays[uid], {}
            elif s is None:
                score, status, reason, metrics = 0.0, r.error or "http", _miner_error(r), {}
            elif s.error:  # scoring itself failed: not the miner's fault, do not punish
                outcomes.append(Outcome(uid, p.hotkey, "score_error", 0.0, self._ema(uid), r.latency_s, s.reason))
                continue
            else:
                score, status, reason, metrics = s.composite, "ok" if not s.reason else "zero", s.reason, s.metrics
            ema = self.state.update(uid, p.hotkey, score, self.cfg.alpha, status=status, latency_s=r.latency_s)
            outcomes.append(Outcome(uid, p.hotkey, status, score, ema, r.latency_s, reason, metrics, r.audio))
        self.state.round += 1
        report = RoundReport(self.state.round, block, task.name, {u: pr.text for u, pr in prompts.items()}, outcomes,
                             t_query, t_score, time.perf_counter() - t0, relay=self._last_relay)
        await self.maybe_set_weights(report, block, force=final)
        await asyncio.to_thread(self.save)
        report.total_s = time.perf_counter() - t0
        if self.on_round:
            try:
                self.on_round(report)
            except Exception:  # rendering must never stop the validator
                log.exception("round callback failed")
        for o in outcomes:
            o.audio = None
        return report

    async def check_relays(self, prompts: dict[int, Prompt], answered: list[tuple[Peer, MinerResult]], elapsed_s: float
                           ) -> dict[int, str]:
        """uid -> reason, for the answering miners whose answer is another miner's rendering of their prompt."""
        self._last_relay = None
        if not self.cfg.relay_check or not answered:
            return {}
        from audiosubnet.scoring.fingerprint import DEFAULT_THRESHOLD

        threshold = getattr(self.scoring, "duplicate_threshold", DEFAULT_THRESHOLD)
        try:
            stats = await find_relays(
                self.client, self.own_hotkey, self.queryable(),
                {u: issued(u, pr.text, pr.unique) for u, pr in prompts.items()},
                {int(p.uid): r.audio for p, r in answered if r.audio is not None},
                window_s=elapsed_s + 5.0, threshold=threshold, timeout_s=self.cfg.relay_timeout_s)
        except Exception:  # evidence gathering must never cost a round
            log.exception("relay check failed")
            return {}
        self._last_relay = stats
        log.info("relay check: %d/%d seen logs, %d entries, %d bytes, %d candidates, %d relays in %.2f s",
                 stats.answered, stats.requests, stats.entries, stats.bytes, stats.candidates, len(stats.findings),
                 stats.seconds)
        return {f.uid: f.reason for f in stats.findings}

    def _ema(self, uid: int) -> float:
        rec = self.state.miners.get(uid)
        return rec.ema if rec else 0.0

    async def maybe_set_weights(self, report: RoundReport, block: int, *, force: bool = False) -> None:
        """Every `weights_every` rounds (counted from the last success; a rate-limited or failed attempt is
        retried the next round), or now when `force` and this run scored rounds since the last weights."""
        if not self.cfg.set_weights:
            return
        last = self.state.last_weight_round
        due = last is None or self.state.round - last >= self.cfg.weights_every
        if not due and not (force and last is not None and self.state.round > last):
            return
        weights = self.state.weights()
        if not weights:
            return
        try:
            if self.own_uid is not None:
                wait = await asyncio.to_thread(blocks_until_weights_allowed, self.chain, self.cfg.netuid, self.own_uid)
                if wait > 0:
                    report.weights_error = f"rate limited for {wait} more blocks"
                    return
            res = await asyncio.wait_for(
                asyncio.to_thread(self.chain.set_weights, self.cfg.netuid, weights), timeout=120)
        except RateLimitedError as e:
            report.weights_error = str(e)
            log.info("weights not set: %s", e)
            return
        except (AsnError, asyncio.TimeoutError, OSError) as e:
            report.weights_error = f"{type(e).__name__}: {e}"
            log.warning("setting weights failed: %s (retrying next round)", _one_line(str(e)))
            return
        self.state.last_weight_block = res.block or block
        self.state.last_weight_round = self.state.round
        report.weights_block, report.weights = self.state.last_weight_block, weights
        log.info("weights set at block %s for %d uids", report.weights_block, len(weights))

    async def run(self, rounds: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Round after round, `round_interval_s` apart (start to start), until `stop` is set."""
        stop = stop or asyncio.Event()
        done = 0
        waiting_since: float | None = None
        while not stop.is_set() and (rounds is None or done < rounds):
            started = self.clock()
            try:
                await self.run_round(final=rounds is not None and done + 1 >= rounds)
                waiting_since = None
            except NoMinersYet as e:  # not a round: wait for the first miner (checked every few seconds)
                if waiting_since is None or started - waiting_since >= 60:
                    log.info("%s; waiting", e)
                    waiting_since = started
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(5.0, max(1.0, self.cfg.round_interval_s)))
                continue
            except ChainError as e:
                log.warning("round skipped: %s", _one_line(str(e)))
            done += 1
            if rounds is not None and done >= rounds:
                break
            delay = max(0.0, self.cfg.round_interval_s - (self.clock() - started))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


def _miner_error(r: MinerResult) -> str:
    detail = f" {r.status}" if r.status else ""
    msg = f": {r.message}" if r.message else ""
    return _one_line(f"{r.error or 'error'}{detail}{msg}")


def _one_line(s: str, limit: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def top(outcomes: Sequence[Outcome], n: int = 5) -> list[Outcome]:
    return sorted(outcomes, key=lambda o: -o.ema)[:n]
