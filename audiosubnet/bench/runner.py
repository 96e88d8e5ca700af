"""`asn bench`: measurements of speech engines and scorers (no rendering; see report.py).

    from audiosubnet.bench.runner import BenchConfig, run_bench
    result = run_bench(BenchConfig(engines=["piper", "espeak"], batch_sizes=[1, 8]), on_event=print)
    result.to_dict()            # JSON-ready; BenchResult.from_dict() reads it back

Per engine (one row per engine and dtype): cold load (first lease on a fresh EngineCache: registry
create + setup), warm load (a second lease: cache hit), time to first audio (the first synthesize()
of one short sentence after the load: lazy initialisation included), then per batch size B one
synthesize() of B items, each sized to about `duration` seconds of speech (texts sized from the
first call's characters per second; random-weight models have their lengths forced), warmed up,
CUDA synchronised, median of repeats within `budget_s`:
  seconds (per call), audio_s (all items), rtf = seconds / audio_s, x_realtime = audio_s / seconds
  (= audio seconds per wall second), peak_mb (torch.cuda.max_memory_allocated on CUDA, the process's
  peak RSS on CPU), vs_old_subnet (the old subnet's H100 RTF / ours), and with `anchors` the H100
  kernel-level anchor and our % of it. Engines that run one request at a time are measured at
  batch 1 only; engines that split a batch into passes run each batch in one (`SpeechEngine.one_pass`).
  Quality: the fixed QUALITY_PROMPTS through the scoring package (WER/CER, MOS, composite; speaker
  similarity for clone engines against references spoken by the offline voices). Skipped for
  random weights (meaningless).
Per scorer (asr, dnsmos, utmos, speaker, and the whole `pipeline` / `pipeline-clone`): seconds per
call, clips/s and x real time per batch size on `duration`-second clips.

Nothing here raises for an engine or scorer that cannot load or fails: it becomes a row with a
status and a reason. Ctrl-C stops the run and returns what was measured (`interrupted=True`).

The measuring lives beside this orchestration, as plain functions over the run's BenchContext (context.py):
engines.py (engine rows, quality), scorers.py (scorer and pipeline rows), music.py (the music scorer row),
workloads.py (texts, clips, random-weight models and workloads, anchors), measuring.py (timing, peak memory,
environment), results.py (the config, result and row dataclasses).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from audiosubnet.bench.context import BenchContext
from audiosubnet.bench.engines import measure_engine
from audiosubnet.bench.measuring import _is_cuda, environment
from audiosubnet.bench.results import BenchConfig, BenchResult, EngineResult, Point, ScorerResult
from audiosubnet.bench.scorers import measure_scorers

if TYPE_CHECKING:
    from audiosubnet.scoring import Scoring

__all__ = ["BenchConfig", "BenchResult", "EngineResult", "Point", "ScorerResult", "run_bench"]


def run_bench(config: BenchConfig, *, on_event: Callable[[str], None] | None = None,
              quality_scoring: Scoring | None = None) -> BenchResult:
    """Measure every engine and scorer of `config`. `on_event` gets one line per step (progress);
    `quality_scoring` replaces the Scoring used for quality (tests). Never raises for an engine or
    scorer; raises UsageError/ConfigError for a bad config. Ctrl-C returns the partial result."""
    import datetime

    ctx = BenchContext.create(config, on_event, quality_scoring)
    t0 = time.perf_counter()
    ctx.result.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    quiet = {name: logging.getLogger(name).level for name in ("pocket_tts", "transformers")}
    for name in quiet:  # random weights: "no EOS" and generation-length warnings by design
        logging.getLogger(name).setLevel(logging.ERROR)
    quiet_hf = _QuietTransformers().__enter__()
    try:
        _torch_setup(ctx)
        ctx.result.env = environment(ctx.device, ctx.dtypes)
        for spec in ctx.engine_specs:
            for dtype in ctx.dtypes:
                measure_engine(ctx, spec, dtype)
        if ctx.scorer_names:
            measure_scorers(ctx)
    except KeyboardInterrupt:
        ctx.result.interrupted = True
        ctx.emit("interrupted: reporting what was measured so far")
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        quiet_hf.__exit__(None, None, None)
        ctx.close()
        ctx.result.wall_s = time.perf_counter() - t0
    return ctx.result


def _torch_setup(ctx: BenchContext) -> None:
    """GPU or random-weight runs need torch: import it once, with the CPU threads pinned."""
    if not (_is_cuda(ctx.device) or ctx.cfg.random_weights) or importlib.util.find_spec("torch") is None:
        return
    import torch  # noqa: F401

    from audiosubnet.runtime.device import set_cpu_threads

    set_cpu_threads()


class _QuietTransformers:
    """transformers' warnings off for the run (random weights trigger generation-length warnings by design),
    without importing transformers for runs that never need it."""

    def __enter__(self) -> _QuietTransformers:
        self.env = os.environ.get("TRANSFORMERS_VERBOSITY")
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        self.old: int | None = None
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            self.old = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers: untyped
        return self

    def __exit__(self, *exc: object) -> None:
        if self.env is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = self.env
        if "transformers" in sys.modules:
            with contextlib.suppress(Exception):
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity(self.old if self.old is not None else hf_logging.WARNING)
