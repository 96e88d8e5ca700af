"""`asn tts batch CSV --ray [ADDRESS]`: the batch job on a Ray cluster, with Ray Data.

The driver (this process) does what the local job does before and after rendering, with the same code
(the job core `jobs/batch.py` through `tts_batch.TtsJob`): parse the CSV, settle bad rows and rows a previous
run already rendered, and keep the manifest (the same journal: each row appended as it comes back, the CSV
order at the end), which only it writes. The rows left go to Ray Data in blocks; an actor pool of engine
replicas (one per GPU when the cluster has GPUs, else one per CPU) renders them with the local job's
batching, bad-row isolation, output naming and per-row seeds, and writes each output straight to the
shared folder or object store (`OutputStore`: temp + rename, or one PUT). Actors send back only manifest
rows, never audio. Exactly once: a row is done when the manifest says so and its file has the size the
manifest records; a row rendered by a run that was killed before the manifest recorded it is rendered
again under the same name (with --seed, to the same bytes), so every row ends up once in the manifest
and once in the output. A full disk stops the job as it stops the local one (BatchStopped), Ctrl-C too
(BatchInterrupted), each with the manifest kept.

Ray is an extra (`pip install 'audiosubnet[ray]'`), imported only here, only when asked for.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from audiosubnet.errors import AsnError, DependencyError, EngineError, UsageError
from audiosubnet.jobs import batch as core
from audiosubnet.jobs.storage import OutputStore
from audiosubnet.jobs.tts_batch import (
    BatchOptions,
    BatchSummary,
    PromptRow,
    RowResult,
    TtsJob,
    load_rows,
)

MAX_BLOCKS = 20_000
MAX_TASK_RETRIES = 3


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a cluster `ray start` left on this host, else a new one
    replicas: int | None = None  # engine actors; default one per GPU, or one per CPU without GPUs
    gpus_per_replica: float | None = None  # default 1 when the cluster has GPUs, else 0 (CPU actors)
    device: str = "auto"  # engine placement inside an actor (cpu for CPU actors)
    dtype: str = "auto"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DependencyError("ray[data]", "ray", "asn tts batch --ray") from e
    return ray


class _Renderer:
    """One engine replica (a Ray actor): renders batches of rows with the local job's code (`TtsJob` without a
    manifest: batching, bad-row isolation, long texts, names, seeds), writes each output the moment it is
    done, and returns the manifest rows. A full disk ends the batch with a stop record.

    Its settings travel as a class attribute (`configured`), not as constructor arguments, which Ray Data
    would park in the object store (and warn about at every actor start)."""

    config: dict = {}

    def __init__(self):
        from audiosubnet.engines.registry import configure_cache

        c = self.config
        self.opts = BatchOptions(**{**c["opts"], "out_dir": Path(c["opts"]["out_dir"])})
        self.store = OutputStore(c["location"])
        self.cache = configure_cache(c["device"], c["dtype"], "auto")

    @classmethod
    def configured(cls, **config) -> type:
        return type("Renderer", (cls,), {"config": config, "__module__": __name__})

    def __call__(self, batch: dict) -> dict:
        rows = [PromptRow(**json.loads(r)) for r in batch["row"]]
        job = TtsJob(rows, self.opts, self.cache, None, self.store, manifest=False)
        groups: dict[str, list[PromptRow]] = {}
        for model, row in zip(batch["model"], rows, strict=True):
            groups.setdefault(str(model), []).append(row)
        stop = None
        for model, group in groups.items():
            try:
                job.run_model(model, group)
            except core.OutputError as e:  # the output location stopped taking files: so will every batch
                stop = str(e)
                break
            except Exception as e:  # an engine's own bug: report the rows, keep the job (and the actor) going
                for row in group:
                    if row.id not in job.results:
                        job.fail(row, model, f"{type(e).__name__}: {e}")
        out = [json.dumps(job.results[r.id].manifest_row()) for r in rows if r.id in job.results]
        if stop is not None:
            out.append(json.dumps({"stop": stop}))
        return {"result": out}


class _DriverRun(TtsJob):
    """The local job's planning and manifest (the same journal, order and resume), in the driver; the
    rendering goes to the actor pool, whose manifest rows come back as batches finish."""

    def __init__(self, *args, ray_opts: RayOptions, **kwargs):
        super().__init__(*args, **kwargs)
        self.ray_opts = ray_opts
        self.ray = None

    def render(self, pending: dict[str, list[PromptRow]]) -> None:
        if not pending:
            return
        ray = self.ray = self.ray or import_ray()
        started = connect(ray, self.ray_opts.address)
        try:
            self.render_on_ray(ray, pending, self.ray_opts)
        finally:
            if started:
                ray.shutdown()

    def render_on_ray(self, ray, pending: dict[str, list[PromptRow]], ray_opts: RayOptions) -> None:
        items = [{"model": model, "row": json.dumps(asdict(row))} for model, rows in pending.items() for row in rows]
        ctx = ray.data.DataContext.get_current()
        with _quiet(ctx):
            ctx.enable_progress_bars = False  # the command draws its own bar from the results
            replicas, gpus, device = plan_pool(ray.cluster_resources(), ray_opts)
            step = max(1, self.opts.max_batch)
            # a block per engine batch: results (and the manifest, and the bar) stream back batch by batch
            blocks = max(1, min(-(-len(items) // step), MAX_BLOCKS))
            opts = {**asdict(self.opts), "out_dir": str(self.opts.out_dir)}
            renderer = _Renderer.configured(opts=opts, location=self.store.location, device=device,
                                            dtype=ray_opts.dtype)
            ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
                renderer, batch_size=step, batch_format="numpy", compute=_pool(ray, replicas),
                num_gpus=gpus or None, num_cpus=None if gpus else 1,
                max_task_retries=MAX_TASK_RETRIES)  # a dead actor is restarted; a batch that kills it, retried
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for text in batch["result"]:
                        record = json.loads(text)
                        if "stop" in record:
                            raise core.OutputError(record["stop"])
                        res = RowResult(**record)
                        if res.status == "ok":
                            self.engine_seconds += float(res.elapsed_s or 0)
                        self.done(res)
            except AsnError:
                raise
            except Exception as e:  # Ray's own (an actor that cannot start, a batch that keeps killing it)
                raise EngineError(f"the Ray job stopped: {_cause(e)}",
                                  hint="The rows done so far are in the manifest; fix the cause and rerun the "
                                       "same command to resume.") from e


def _cause(e: BaseException) -> str:
    """The root error of a Ray exception (whose text is a remote traceback), in one line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    found = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return (found[-1] if found else next((ln for ln in lines if ln), type(e).__name__))[:300]


def plan_pool(resources: dict[str, float], ray_opts: RayOptions) -> tuple[int, float, str]:
    """(replicas, GPUs per replica, engine device) for a cluster's resources: one replica per GPU when it
    has GPUs (unless the engines are asked to run on the CPU), else one CPU actor per CPU."""
    gpus = ray_opts.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 and ray_opts.device != "cpu" else 0.0
    if gpus:
        replicas = ray_opts.replicas or max(1, int(resources.get("GPU", 0) // gpus))
        return replicas, gpus, ray_opts.device
    return ray_opts.replicas or max(1, int(resources.get("CPU", 1))), 0.0, "cpu"


def _pool(ray, replicas: int):
    return ray.data.ActorPoolStrategy(size=replicas)


class _quiet:
    """Ray Data's own log lines (start, stop, "progress bars disabled") off for the job, back on after."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.saved = getattr(ctx, "print_on_execution_start", None)
        self.logger = logging.getLogger("ray.data")
        self.level = self.logger.level

    def __enter__(self):
        self.logger.setLevel(logging.ERROR)
        if self.saved is not None:
            self.ctx.print_on_execution_start = False

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
        if self.saved is not None:
            self.ctx.print_on_execution_start = self.saved


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A named host:port that does not answer is a one-line error now, not minutes of Ray retrying."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except ValueError as e:
        raise UsageError(f"'{address}' is not a Ray address",
                         hint="Use host:port (e.g. 10.0.0.5:6379), ray://host:10001, auto or local.") from e
    except OSError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}",
                         hint="Is `ray start --head` running there, and the port open?") from e


def connect(ray, address: str | None) -> bool:
    """Join (or start) a cluster unless this process already has one. True when we started it."""
    if ray.is_initialized():
        return False
    kwargs: dict = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    check_reachable(address)
    if address in ("local", None):
        kwargs["include_dashboard"] = False if address == "local" else None
    try:
        ray.init(address=address, **{k: v for k, v in kwargs.items() if v is not None})
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"cannot reach the Ray cluster at {address or 'auto'}: {e}",
                         hint="Start one with `ray start --head`, or pass its address (host:6379, ray://host:10001),"
                              " or --ray local.") from e
    return True


def run_tts_batch_ray(csv_path: Path | bytes, opts: BatchOptions, ray_opts: RayOptions | None = None,
                      out: str | None = None, progress: Callable[[RowResult], None] | None = None,
                      on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """The batch job on Ray: the same rows, outputs, manifest and resume as `run_tts_batch` (the same core,
    `jobs/batch.py`), and the same BatchInterrupted / BatchStopped.

    `out` (a folder every node sees, or an fsspec URL such as s3://bucket/prefix) overrides opts.out_dir.
    """
    core.check_format(opts.fmt)
    rows = load_rows(csv_path)
    store = OutputStore(out if out is not None else opts.out_dir)
    ray = import_ray()
    store.check_writable()
    if on_rows:
        on_rows(len(rows))
    job = _DriverRun(rows, opts, None, progress, store, ray_opts=ray_opts or RayOptions())  # no engine here
    job.ray = ray
    return core.run_job(job)
