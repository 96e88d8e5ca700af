"""The wandb logger never blocks the loop and never raises into it (a fake stands in for wandb)."""

from __future__ import annotations

import threading
import time
import types

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.validator.loop import Outcome, RoundReport
from audiosubnet.validator.wandb_log import WandbLogger


def report(n: int, wav: bytes | None) -> RoundReport:
    outs = [Outcome(uid=i, hotkey=f"hk{i}", status="ok", score=0.5 + i / 10, ema=0.3, latency_s=0.2,
                    metrics={"wer": 0.1}, audio=wav) for i in range(3)]
    return RoundReport(round=n, block=10 * n, task="tts", prompts={i: "Hello there." for i in range(3)}, outcomes=outs, query_s=1.0,
                       score_s=0.5, total_s=1.6)


class FakeRun:
    def __init__(self, slow: float = 0.0, fail_at: int | None = None):
        self.logged: list[tuple[int, dict]] = []
        self.slow, self.fail_at, self.finished = slow, fail_at, False

    def log(self, data, step):
        if self.fail_at is not None and step >= self.fail_at:
            raise RuntimeError("wandb server said no")
        time.sleep(self.slow)
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


def fake_wandb(run: FakeRun):
    return types.SimpleNamespace(init=lambda **kw: run, Audio=lambda x, sample_rate, caption: ("audio", sample_rate))


def test_logs_metrics_and_samples_even_after_the_loop_dropped_the_audio():
    wav = audiolib.encode(audiolib.Audio(np.zeros(1600, np.float32) + 0.1, 16000), "wav")
    run = FakeRun()
    w = WandbLogger(project="p", module=fake_wandb(run), samples=2)
    r = report(1, wav)
    w.log_round(r)
    for o in r.outcomes:  # what the loop does right after the callback
        o.audio = None
    w.close()
    (step, data), = run.logged
    assert step == 1 and data["miner/2/score"] == 0.7 and data["miner/0/wer"] == 0.1
    assert {k for k in data if k.startswith("sample/")} == {"sample/uid2", "sample/uid1"}
    assert run.finished


def test_a_slow_wandb_never_blocks_and_a_failing_one_stops_quietly(caplog):
    run = FakeRun(slow=0.5)
    w = WandbLogger(project="p", module=fake_wandb(run), queue_size=2)
    t0 = time.perf_counter()
    for i in range(20):
        w.log_round(report(i, None))
    assert time.perf_counter() - t0 < 0.2  # returned at once; extra rounds dropped
    assert "falling behind" in caplog.text
    w.close(timeout=5)

    bad = FakeRun(fail_at=2)
    w = WandbLogger(project="p", module=fake_wandb(bad))
    for i in range(5):
        w.log_round(report(i, None))
    w.close(timeout=5)
    assert [s for s, _ in bad.logged] == [0, 1] and "wandb logging stopped" in caplog.text
    assert threading.active_count() < 50


def test_missing_wandb_is_a_dependency_error(monkeypatch):
    import builtins

    import pytest

    from audiosubnet.errors import DependencyError

    real = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError("no wandb")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(DependencyError, match="wandb"):
        WandbLogger(project="p")
