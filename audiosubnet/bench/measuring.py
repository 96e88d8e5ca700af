"""The measuring primitives of `asn bench`: timing (`measure`: warmed up, CUDA synchronised, repeated within a
budget), memory (`memory_now_mb`, `_Peak` above a baseline), the environment that makes two runs comparable,
how an exception becomes a row's status and reason (`_short`, `_unavailable`), and one timed point of a scorer
row (`score_point`)."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from audiosubnet.bench.results import BenchConfig, Point, ScorerResult
from audiosubnet.bench.workloads import ANCHOR_TARGET, ANCHORS

T = TypeVar("T")


def _short(e: BaseException) -> str:
    from audiosubnet.errors import AsnError

    if isinstance(e, AsnError):
        text = e.message + (f" ({e.hint})" if e.hint else "")
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _unavailable(e: BaseException) -> bool:
    from audiosubnet.errors import ConfigError, DependencyError, ModelNotDownloadedError, UnknownModelError

    return isinstance(e, DependencyError | ModelNotDownloadedError | UnknownModelError | ImportError | ConfigError)


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    if _is_cuda(device) and "torch" in sys.modules:
        import torch

        torch.cuda.synchronize(device)


def _free(device: str) -> None:
    gc.collect()
    if _is_cuda(device) and "torch" in sys.modules:
        import torch

        torch.cuda.empty_cache()


def memory_now_mb(device: str) -> float | None:
    """Memory in use now: CUDA allocated on a GPU, the process's RSS on CPU."""
    with contextlib.suppress(Exception):
        if _is_cuda(device):
            import torch

            return torch.cuda.memory_allocated(device) / 2**20
        m = re.search(r"VmRSS:\s+(\d+)\s*kB", Path("/proc/self/status").read_text())
        if m:
            return int(m.group(1)) / 1024
        import psutil

        rss: int = psutil.Process().memory_info().rss  # psutil is untyped
        return rss / 2**20
    return None


class _Peak:
    """Peak memory over a block, above `baseline_mb` (the memory in use before the model was loaded, so the
    number is the model's weights + working memory): CUDA max allocated on a GPU, else the process's peak
    RSS (VmHWM reset through /proc/self/clear_refs where Linux allows, else RSS sampled with psutil)."""

    _hwm_ok: bool | None = None

    def __init__(self, device: str, baseline_mb: float | None = None):
        self.device, self.baseline = device, baseline_mb or 0.0
        self.mb: float | None = None
        self._stop: tuple[threading.Event, threading.Thread, list[int]] | None = None

    @classmethod
    def _reset_hwm(cls) -> bool:
        if cls._hwm_ok is False:
            return False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            cls._hwm_ok = True
        except OSError:
            cls._hwm_ok = False
        return cls._hwm_ok

    def __enter__(self) -> _Peak:
        if _is_cuda(self.device):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        elif not self._reset_hwm():
            self._start_sampler()
        return self

    def _start_sampler(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        import threading

        proc, stop, box = psutil.Process(), threading.Event(), [0]

        def sample() -> None:
            while not stop.is_set():
                box[0] = max(box[0], proc.memory_info().rss)
                stop.wait(0.01)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        self._stop = (stop, t, box)

    def __exit__(self, *exc: object) -> None:
        peak: float | None = None
        with contextlib.suppress(Exception):
            if _is_cuda(self.device):
                import torch

                peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            elif self._stop is not None:
                stop, t, box = self._stop
                stop.set()
                t.join()
                peak = box[0] / 2**20 or None
            elif self._hwm_ok:
                m = re.search(r"VmHWM:\s+(\d+)\s*kB", Path("/proc/self/status").read_text())
                peak = int(m.group(1)) / 1024 if m else None
            else:  # the lifetime peak: an upper bound
                import resource

                kib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
        if peak is not None:
            self.mb = max(0.0, peak - self.baseline)


def measure(fn: Callable[[], T], device: str, budget_s: float, min_reps: int = 1, max_reps: int = 5
            ) -> tuple[list[float], T, bool]:
    """Warm up once, then time `fn` (CUDA synchronised) until `budget_s` is spent: at least `min_reps`,
    at most `max_reps` timed runs. On CPU a warm-up that alone exceeds the budget is the measurement
    (returned with warmed=False). Returns (seconds of each timed run, last output, warmed)."""

    def timed() -> tuple[float, T]:
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - t0, out

    _sync(device)
    spent, out = timed()
    if not _is_cuda(device) and spent >= budget_s and min_reps <= 1:
        return [spent], out, False
    times: list[float] = []
    while len(times) < max(1, min_reps) or (spent < budget_s and len(times) < max_reps):
        dt, out = timed()
        times.append(dt)
        spent += dt
    return times, out, True


def environment(device: str, dtypes: Sequence[str]) -> dict[str, Any]:
    """What makes two runs comparable: machine, device, library versions, dtype, git commit."""
    from importlib.metadata import PackageNotFoundError, version

    from audiosubnet import __version__

    env: dict[str, Any] = {"asn": __version__, "python": platform.python_version(), "platform": platform.platform(),
                           "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "device": device,
                           "device_name": _cpu_name(), "dtypes": list(dtypes)}
    for dist in ("torch", "transformers", "numpy", "onnxruntime", "ctranslate2", "faster-whisper", "piper-tts",
                 "pocket-tts", "speechmos"):
        with contextlib.suppress(PackageNotFoundError):
            env[dist] = version(dist)
    if "torch" in sys.modules:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if _is_cuda(device) and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(device)
            env.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                       gpu_memory_gib=round(props.total_memory / 2**30, 1),
                       compute_capability=f"{props.major}.{props.minor}")
    env.update(_git())
    return env


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"git_commit": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return {"git_commit": commit.stdout.strip() or None, "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None}


def score_point(cfg: BenchConfig, emit: Callable[[str], None], row: ScorerResult, fn: Callable[[], Any], b: int,
                items: Sequence[Any], baseline_mb: float | None) -> Point:
    """One batch size of a scorer row: `fn()` scores the first `b` of `items` (anything with an `audio`)."""
    p = Point(batch=b)
    try:
        with _Peak(row.device, baseline_mb) as peak:
            times, _, warmed = measure(fn, row.device, cfg.budget_s, cfg.min_reps, cfg.max_reps)
        p.seconds, p.reps, p.warmed, p.peak_mb = statistics.median(times), len(times), warmed, peak.mb
        p.audio_s = sum(it.audio.duration for it in items[:b])
        p.per_item_s = p.audio_s / b
        p.clips_per_s = b / max(1e-9, p.seconds)
        p.x_realtime = p.audio_s / max(1e-9, p.seconds)
        p.rtf = p.seconds / max(1e-9, p.audio_s)
        anchor = None
        if (cfg.anchors and row.weights == "random-full" and _is_cuda(row.device) and row.name == "asr"
                and abs(cfg.duration - 30) < 0.5 and cfg.new_tokens == 100):
            anchor = ANCHORS.get(("asr", b, row.dtype))
        if anchor:
            p.anchor_x, p.pct_of_anchor = anchor, 100 * p.x_realtime / anchor
            p.meets_target = p.x_realtime >= ANCHOR_TARGET * anchor
        emit(f"scorer {row.name} b{b}: {p.clips_per_s:.2f} clips/s, {p.x_realtime:.1f}x real time ({p.reps} reps)")
    except KeyboardInterrupt:
        raise
    except Exception as e:
        p.error = _short(e)
        emit(f"scorer {row.name} b{b}: failed: {p.error}")
        _free(row.device)
    return p
