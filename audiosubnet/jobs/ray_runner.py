"""The `--ray` runner every job shares (`asn tts batch`, `asn music batch`, `asn score DIR`): a Ray cluster,
Ray Data, and an actor pool of replicas (engines or scorers).

- `cluster(address)`: join (or start) a cluster for the job, with one-line errors for a wrong address;
- `run_on_pool(tasks, actor, ray_opts)`: the tasks (the driver cuts them: one engine batch, one scoring
  chunk) go to Ray Data in blocks; an actor pool (one replica per GPU, or one CPU actor per CPU) runs
  each task and sends back a small result (manifest rows, scores: never audio), which the driver gets as
  tasks finish, in whatever order they finish;
- `run_manifest_job_on_ray(job, ray_opts)`: a CSV -> files job (`jobs/batch.py`'s `ManifestJob`: the
  speech job, the music job) on the pool. The driver does what the local job does before and after
  rendering, with the same code: parse, settle bad rows and rows an earlier run finished, and keep the
  manifest, which only it writes. It cuts the rows left into the local job's engine batches (same order,
  same size); each actor renders a batch with the local job's code (`run_model`: bad-row isolation,
  output names, per-row seeds) and writes each output straight to the shared folder or object store
  (`OutputStore`: temp + rename, or one PUT), then returns the batch's manifest rows.

Exactly once: a row is done when the manifest says so and its file has the size the manifest records; a row
rendered by a run that was killed before the manifest recorded it is rendered again under the same name, so
every row ends up once in the manifest and once among the outputs. A full disk stops the job as it stops the
local one (BatchStopped), Ctrl-C too (BatchInterrupted), each with the manifest kept.

Ray is an extra (`pip install 'audiosubnet[ray]'`): this module imports it only inside its functions, and
only the `--ray` paths import this module.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from audiosubnet.errors import AsnError, DependencyError, EngineError, UsageError
from audiosubnet.jobs import batch as core

if TYPE_CHECKING:
    from ray.data import DataContext

MAX_BLOCKS = 20_000
MAX_TASK_RETRIES = 3
RESUME_HINT = "The rows done so far are kept; fix the cause and rerun the same command to resume."


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a cluster `ray start` left on this host, else a new one
    replicas: int | None = None  # actors; default one per GPU, or one per CPU without GPUs
    gpus_per_replica: float | None = None  # default 1 when the cluster has GPUs, else 0 (CPU actors)
    device: str = "auto"  # model placement inside an actor (cpu for CPU actors)
    dtype: str = "auto"


def import_ray(what: str = "--ray") -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DependencyError("ray[data]", "ray", what) from e
    return ray


# ---- the cluster ---------------------------------------------------------------------------------
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


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join (or start) a cluster unless this process already has one. True when we started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    check_reachable(address)
    if address in ("local", None):
        kwargs["include_dashboard"] = False if address == "local" else None
    try:
        ray.init(address=address, **{k: v for k, v in kwargs.items() if v is not None})
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"cannot reach the Ray cluster at {address or 'auto'}: {e}",
                         hint="Start one with `ray start --head`, or pass its address (host:6379, ray://host:10001),"
                              " or --ray-address local.") from e
    return True


@contextlib.contextmanager
def cluster(address: str | None, what: str = "--ray") -> Iterator[ModuleType]:
    """Ray, connected for the job; a cluster the job started is shut down after it."""
    ray = import_ray(what)
    started = connect(ray, address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def plan_pool(resources: dict[str, float], ray_opts: RayOptions) -> tuple[int, float, str]:
    """(replicas, GPUs per replica, device) for a cluster's resources: one replica per GPU when it has GPUs
    (unless the models are asked to run on the CPU), else one CPU actor per CPU."""
    gpus = ray_opts.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 and ray_opts.device != "cpu" else 0.0
    if gpus:
        replicas = ray_opts.replicas or max(1, int(resources.get("GPU", 0) // gpus))
        return replicas, gpus, ray_opts.device
    return ray_opts.replicas or max(1, int(resources.get("CPU", 1))), 0.0, "cpu"


# ---- the actor pool ------------------------------------------------------------------------------
class PoolActor:
    """A replica (a Ray actor): `setup()` once (load what it needs), then `handle(task)` for each task it is
    sent; tasks and results travel pickled. Subclasses hold their settings as the class attribute `config`
    (`configured(...)`), not as constructor arguments, which Ray Data would park in the object store (and
    warn about at every actor start)."""

    config: dict[str, Any] = {}

    def __init__(self) -> None:
        self.setup()

    @classmethod
    def configured(cls, **config: Any) -> type:
        return type(cls.__name__.lstrip("_"), (cls,), {"config": config, "__module__": cls.__module__})

    def setup(self) -> None:
        """Load what every task needs (the model cache, the scorers)."""

    def handle(self, task: Any) -> Any:
        raise NotImplementedError

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        return {"result": [pickle.dumps(self.handle(pickle.loads(t))) for t in batch["task"]]}


def run_on_pool(ray: ModuleType, tasks: list[Any], make_actor: Callable[[str], type], ray_opts: RayOptions,
                hint: str = RESUME_HINT) -> Iterator[Any]:
    """Each task through one replica of the pool (`make_actor(device)`: a configured PoolActor class); the
    results as tasks finish. Ray's own failures (an actor that cannot start, a task that keeps killing its
    actor) become one EngineError naming the cause."""
    if not tasks:
        return
    ctx = ray.data.DataContext.get_current()
    with _quiet(ctx):
        ctx.enable_progress_bars = False  # the command draws its own bar from the results
        replicas, gpus, device = plan_pool(ray.cluster_resources(), ray_opts)
        items = [{"task": pickle.dumps(t)} for t in tasks]
        with warnings.catch_warnings():  # newer Ray Data names no parameter for the retries (its default: forever)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS))).map_batches(
                make_actor(device), batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=replicas), num_gpus=gpus or None,
                num_cpus=None if gpus else 1,
                max_task_retries=MAX_TASK_RETRIES)  # a dead actor is restarted; a task that kills it, retried
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for payload in batch["result"]:
                    yield pickle.loads(payload)
        except AsnError:
            raise
        except Exception as e:
            raise EngineError(f"the Ray job stopped: {_cause(e)}", hint=hint) from e


def _cause(e: BaseException) -> str:
    """The root error of a Ray exception (whose text is a remote traceback), in one line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    found = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return (found[-1] if found else next((ln for ln in lines if ln), type(e).__name__))[:300]


class _quiet:
    """Ray Data's own log lines (start, stop, "progress bars disabled") off for the job, back on after."""

    def __init__(self, ctx: DataContext) -> None:
        self.ctx = ctx
        self.saved = getattr(ctx, "print_on_execution_start", None)
        self.logger = logging.getLogger("ray.data")
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.ERROR)
        if self.saved is not None:
            self.ctx.print_on_execution_start = False

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
        if self.saved is not None:
            self.ctx.print_on_execution_start = self.saved


# ---- CSV -> files jobs ---------------------------------------------------------------------------
class _Renderer(PoolActor):
    """An engine replica: renders one engine batch (model, rows) with the local job's code (the job class
    without a manifest), writes each output the moment it is done, and returns the batch's results. A full
    disk ends the batch with a stop record (the driver then stops the job)."""

    def setup(self) -> None:
        from audiosubnet.engines.registry import configure_cache
        from audiosubnet.jobs.storage import OutputStore

        c = self.config
        self.store = OutputStore(c["location"])
        self.cache = configure_cache(c["device"], c["dtype"], "auto")

    def handle(self, task: tuple[str, list[Any]]) -> dict[str, Any]:
        model, rows = task
        job = self.config["job"](rows, self.config["opts"], self.cache, None, self.store, manifest=False)
        stop = None
        try:
            job.run_model(model, rows)
        except core.OutputError as e:  # the output location stopped taking files: so will every batch
            stop = str(e)
        except Exception as e:  # an engine's own bug: report the rows, keep the job (and the actor) going
            for row in rows:
                if row.id not in job.results:
                    job.fail(row, model, f"{type(e).__name__}: {e}")
        return {"results": [job.results[r.id] for r in rows if r.id in job.results], "stop": stop}


def engine_batches(job: core.ManifestJob, pending: dict[str, list[Any]]) -> list[tuple[str, list[Any]]]:
    """The local job's engine batches: per model, the rows in the job's order, `max_batch` at a time."""
    step = max(1, job.opts.max_batch)
    out: list[tuple[str, list[Any]]] = []
    for model, rows in pending.items():
        ordered = [row for row, _ in job.order([(row, row) for row in rows])]
        out += [(model, ordered[i:i + step]) for i in range(0, len(ordered), step)]
    return out


def run_manifest_job_on_ray(job: core.ManifestJob, ray_opts: RayOptions, what: str = "--ray") -> core.BatchSummary:
    """A job built without an engine cache (`cache=None`), run with its rendering on the pool: the same rows,
    outputs, manifest and resume as `core.run_job(job)`, and the same BatchInterrupted / BatchStopped.
    A rerun with nothing left to render does not even connect to the cluster."""
    import_ray(what)  # a missing extra is an error before anything is written

    def body() -> None:
        pending = job.plan()
        if not pending:
            return
        with cluster(ray_opts.address, what) as ray:
            def make_actor(device: str) -> type:
                return _Renderer.configured(job=type(job), opts=job.opts, location=job.store.location,
                                            device=device, dtype=ray_opts.dtype)

            for out in run_on_pool(ray, engine_batches(job, pending), make_actor, ray_opts):
                for res in out["results"]:
                    if res.status == "ok":
                        job.engine_seconds += float(res.elapsed_s or 0)
                    job.done(res)
                if out["stop"] is not None:
                    raise core.OutputError(out["stop"])

    return core.run_job(job, body)
