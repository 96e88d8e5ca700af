"""Optional Weights & Biases logging for the validator that never blocks or crashes the loop.

Rounds are put on a small queue (dropped, with one warning, when wandb falls behind) and a daemon
thread logs them: per-miner score/EMA/latency, round timings, and a few audio samples. Any wandb
error is logged once and logging stops; the validator goes on.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
from typing import Any

from audiosubnet.errors import DependencyError

log = logging.getLogger(__name__)


class WandbLogger:
    def __init__(self, *, project: str, entity: str | None = None, offline: bool = False, samples: int = 2,
                 config: dict[str, Any] | None = None, module: Any = None, queue_size: int = 8):
        if module is None:
            try:
                module = importlib.import_module("wandb")
            except ImportError as e:
                raise DependencyError("wandb", "wandb", "--wandb") from e
        self.wandb = module
        self.samples = samples
        self._q: queue.Queue[tuple[Any, list[tuple[int, bytes]]] | None] = queue.Queue(maxsize=queue_size)
        self._dropped = 0
        self._broken = False
        self._run: Any = None  # the wandb run (wandb is an optional, dynamically loaded module)
        self._init = dict(project=project, entity=entity, mode="offline" if offline else "online",
                          config=config or {}, reinit=True)
        self._thread = threading.Thread(target=self._worker, name="wandb", daemon=True)
        self._thread.start()

    def log_round(self, report: Any) -> None:
        """Called from the loop: returns at once."""
        if self._broken:
            return
        # keep the sample bytes now: the loop drops them from the report after this call
        best = sorted((o for o in report.outcomes if o.audio and o.status == "ok"), key=lambda o: -o.score)
        samples = [(o.uid, o.audio) for o in best[: self.samples]]
        try:
            self._q.put_nowait((report, samples))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("wandb is falling behind; dropping rounds from its log")

    def close(self, timeout: float = 10.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)

    def _worker(self) -> None:
        try:
            self._run = self.wandb.init(**self._init)
        except Exception as e:
            self._fail(e)
            return
        while True:
            job = self._q.get()
            if job is None:
                break
            report, samples = job
            try:
                self._run.log(self._payload(report, samples), step=report.round)
            except Exception as e:
                self._fail(e)
                return
        try:
            self._run.finish()
        except Exception as e:
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        self._broken = True
        log.warning("wandb logging stopped: %s: %s", type(e).__name__, " ".join(str(e).split())[:200])

    def _payload(self, r: Any, samples: list[tuple[int, bytes]]) -> dict[str, Any]:
        data: dict[str, Any] = {"round/query_s": r.query_s, "round/score_s": r.score_s, "round/total_s": r.total_s,
                                "round/block": r.block, "round/task": r.task, "round/miners": len(r.outcomes)}
        for o in r.outcomes:
            p = f"miner/{o.uid}"
            data[f"{p}/score"] = o.score
            data[f"{p}/ema"] = o.ema
            if o.latency_s is not None:
                data[f"{p}/latency_s"] = o.latency_s
            for k, v in o.metrics.items():
                data[f"{p}/{k}"] = v
        for uid, wav in samples:
            try:
                from audiosubnet import audio as audiolib

                a = audiolib.decode(wav)
                data[f"sample/uid{uid}"] = self.wandb.Audio(a.samples, sample_rate=a.sample_rate,
                                                            caption=r.prompts.get(uid, r.prompt)[:120])
            except Exception:  # a sample that will not decode is just not logged
                continue
        return data
