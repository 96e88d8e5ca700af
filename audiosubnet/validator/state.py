"""Validator state: per-uid moving averages, hotkeys, round counter, last weight block.

Persisted as JSON with an atomic write (temp + fsync + rename) after every round, so a kill -9
at any moment leaves either the previous or the new state on disk, never a torn file. A file
that cannot be read is kept as `<name>.corrupt-<time>` and a fresh state starts with a warning.
Scores from another SCORING_VERSION are never mixed: the averages restart.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audiosubnet.audio import write_atomic

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class MinerRecord:
    hotkey: str
    ema: float = 0.0
    last_score: float | None = None
    last_status: str = ""
    last_latency_s: float | None = None
    last_round: int = -1  # round in which it was last scored
    last_turn: int = -1  # position in the query queue when last chosen (fair rotation)
    queries: int = 0
    failures: int = 0


@dataclass
class ValidatorState:
    scoring_version: str
    round: int = 0
    last_weight_block: int | None = None
    miners: dict[int, MinerRecord] = field(default_factory=dict)
    turn: int = 0  # queries handed out so far (fair rotation)
    last_weight_round: int | None = None  # `round` when weights were last set

    # ---- scores --------------------------------------------------------------------------
    def sync_hotkeys(self, hotkeys: dict[int, str]) -> list[int]:
        """Reset uids whose hotkey changed (a new miner took the slot); forget uids gone from the subnet."""
        reset = []
        for uid, hk in hotkeys.items():
            rec = self.miners.get(uid)
            if rec is None or rec.hotkey != hk:
                if rec is not None:
                    reset.append(uid)
                self.miners[uid] = MinerRecord(hotkey=hk)
        for uid in [u for u in self.miners if u not in hotkeys]:
            del self.miners[uid]
        return reset

    def take_turns(self, uids: list[int]) -> None:
        """Mark these uids as queried now, in this order (they go to the back of the queue)."""
        for uid in uids:
            rec = self.miners.get(uid)
            if rec is not None:
                rec.last_turn = self.turn
                self.turn += 1

    def update(self, uid: int, hotkey: str, score: float, alpha: float, *, status: str = "ok",
               latency_s: float | None = None) -> float:
        """Fold one round's score into the moving average. Failures and timeouts arrive as 0."""
        rec = self.miners.get(uid)
        if rec is None or rec.hotkey != hotkey:
            rec = self.miners[uid] = MinerRecord(hotkey=hotkey)
        s = float(score) if math.isfinite(score) else 0.0
        s = min(1.0, max(0.0, s))
        rec.ema = alpha * s + (1.0 - alpha) * rec.ema
        rec.last_score, rec.last_status, rec.last_latency_s = s, status, latency_s
        rec.last_round = self.round
        rec.queries += 1
        rec.failures += status != "ok"
        return rec.ema

    def weights(self) -> dict[int, float]:
        """Normalized weights from the moving averages (all zero -> empty)."""
        total = sum(r.ema for r in self.miners.values() if r.ema > 0)
        if total <= 0:
            return {}
        return {uid: r.ema / total for uid, r in sorted(self.miners.items()) if r.ema > 0}

    # ---- persistence ---------------------------------------------------------------------
    def to_json(self) -> bytes:
        data = {"state_version": STATE_VERSION, "scoring_version": self.scoring_version, "round": self.round,
                "last_weight_block": self.last_weight_block, "turn": self.turn, "saved_at": time.time(),
                "last_weight_round": self.last_weight_round,
                "miners": {str(uid): asdict(r) for uid, r in sorted(self.miners.items())}}
        return json.dumps(data, indent=1).encode()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path, scoring_version: str) -> ValidatorState:
        if not path.exists():
            return cls(scoring_version)
        try:
            data = json.loads(path.read_bytes())
            if data.get("state_version") != STATE_VERSION:
                raise ValueError(f"state version {data.get('state_version')!r}")
            miners = {int(uid): MinerRecord(**rec) for uid, rec in data["miners"].items()}
            state = cls(data["scoring_version"], int(data["round"]), data.get("last_weight_block"), miners,
                        int(data.get("turn", 0)), data.get("last_weight_round"))
        except Exception as e:
            backup = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            try:
                path.replace(backup)
            except OSError:
                backup = path
            log.warning("validator state %s is unreadable (%s): kept as %s, starting fresh", path, e, backup.name)
            return cls(scoring_version)
        if state.scoring_version != scoring_version:
            log.warning("validator state was scored with %s, now %s: moving averages restart",
                        state.scoring_version, scoring_version)
            for rec in state.miners.values():
                rec.ema, rec.last_score = 0.0, None
            state.scoring_version = scoring_version
        return state
