"""`asn tts batch CSV --ray [ADDRESS]`: the speech batch job on a Ray cluster, with Ray Data.

The runner is the one every `--ray` job shares (`jobs/ray_runner.py`: the driver plans and keeps the manifest,
an actor pool of engine replicas renders the local job's engine batches and writes the outputs); this module
only builds the speech job (`tts_batch.TtsJob`) for it. Ray is imported only when this runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audiosubnet.jobs import batch as core
from audiosubnet.jobs.ray_runner import RayOptions, import_ray, run_manifest_job_on_ray
from audiosubnet.jobs.storage import OutputStore
from audiosubnet.jobs.tts_batch import BatchOptions, BatchSummary, RowResult, TtsJob, load_rows

__all__ = ["RayOptions", "run_tts_batch_ray"]


def run_tts_batch_ray(csv_path: Path | bytes, opts: BatchOptions, ray_opts: RayOptions | None = None,
                      out: str | None = None, progress: Callable[[RowResult], None] | None = None,
                      on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """The speech batch job on Ray: the same rows, outputs, manifest and resume as `run_tts_batch`, and the
    same BatchInterrupted / BatchStopped.

    `out` (a folder every node sees, or an fsspec URL such as s3://bucket/prefix) overrides opts.out_dir.
    """
    core.check_format(opts.fmt)
    rows = load_rows(csv_path)
    store = OutputStore(out if out is not None else opts.out_dir)
    import_ray("asn tts batch --ray")
    store.check_writable()
    if on_rows:
        on_rows(len(rows))
    job = TtsJob(rows, opts, None, progress, store)  # no engine here: the actors have them
    return run_manifest_job_on_ray(job, ray_opts or RayOptions(), "asn tts batch --ray")
