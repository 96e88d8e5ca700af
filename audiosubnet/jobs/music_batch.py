"""`asn music batch`: a CSV of music prompts -> one audio file per row + a manifest.

Columns: `prompt` (required), optional `id`, `duration` (seconds, default 10), `seed`, `model`; read like the
speech prompts (`,` `;` tab or `|`; a file without a header is one prompt per line). The job is `asn tts batch`'s
(the core both run on is `jobs/batch.py`): per-row errors in the manifest, atomic outputs, each row written and
in the manifest as soon as it is done, a full disk stops the batch, Ctrl-C keeps finished rows, and a rerun
skips rows whose output exists and whose manifest row matches (model, prompt, duration, seed, format, size).
An unseeded row gets a seed derived from its prompt, so a rerun (or --force) makes the same music.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiosubnet.audio import Audio
from audiosubnet.engines.base import SpeechEngine
from audiosubnet.engines.music import MAX_DURATION_S, MusicRequest, music_engine_check
from audiosubnet.engines.registry import EngineCache
from audiosubnet.jobs import batch as job
from audiosubnet.jobs import prompts_csv
from audiosubnet.jobs.batch import BatchSummary
from audiosubnet.jobs.storage import OutputStore

if TYPE_CHECKING:
    from audiosubnet.jobs.ray_runner import RayOptions

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["id", "file", "model", "sample_rate", "duration_s", "requested_s", "seed", "elapsed_s",
                   "status", "error", "prompt_sha1", "bytes", "prompt"]
DEFAULT_MUSIC_MODEL = "musicgen:facebook/musicgen-small"


@dataclass
class MusicRow:
    number: int
    line: int
    id: str
    prompt: str = ""
    duration_s: float = 10.0
    seed: int = 0
    model: str | None = None
    error: str | None = None


@dataclass
class MusicRowResult(job.JobResult):
    id: str
    file: str = ""
    model: str = ""
    sample_rate: int | str = ""
    duration_s: float | str = ""
    requested_s: float | str = ""
    seed: int | str = ""
    elapsed_s: float | str = ""
    status: str = "error"
    error: str = ""
    prompt_sha1: str = ""
    bytes: int | str = ""
    prompt: str = ""
    skipped: bool = field(default=False, compare=False)

    NUMBERS = {**job.JobResult.NUMBERS, "requested_s": float, "seed": int}


@dataclass
class MusicBatchOptions:
    out_dir: Path = Path("music_target")
    fmt: str = "wav"
    model: str = DEFAULT_MUSIC_MODEL
    duration_s: float = 10.0
    force: bool = False
    max_batch: int = 8


def prompt_seed(prompt: str) -> int:
    return int(job.sha1(prompt)[:8], 16)


MUSIC_COLUMNS = {"id", "prompt", "duration", "seed", "model"}


def read_music_prompts(path: Path, default_s: float = 10.0) -> list[MusicRow]:
    """The music prompts CSV, read like the speech one (`jobs/prompts_csv.py`: dialect sniffing, one prompt
    per line without a header, binary files refused) with a `prompt` column."""
    table = prompts_csv.parse_table(prompts_csv.read_source(path, "prompt"), f"prompts file {path}", "prompt",
                                    MUSIC_COLUMNS)
    rows: list[MusicRow] = []
    make = lambda n, line: MusicRow(number=n, line=line, id=f"{n:04d}", duration_s=default_s)  # noqa: E731
    for row, get in prompts_csv.fill_rows(table, make, rows):
        line = row.line
        row.prompt = " ".join(get("prompt").split())
        row.model = get("model") or None
        row.seed = prompt_seed(row.prompt)
        duration, seed = get("duration"), get("seed")
        try:
            if duration:
                row.duration_s = float(duration)
                if not math.isfinite(row.duration_s) or not (0 < row.duration_s <= MAX_DURATION_S):
                    row.error = f"line {line}: duration {duration} is outside 0-{MAX_DURATION_S:g} s"
        except ValueError:
            row.error = f"line {line}: duration '{duration}' is not a number"
        try:
            if seed:
                row.seed = int(seed)
                if not (0 <= row.seed < 2**32):
                    row.error = row.error or f"line {line}: seed {seed} is outside 0-4294967295"
        except ValueError:
            row.error = row.error or f"line {line}: seed '{seed}' is not an integer"
        if not row.prompt and not row.error:
            row.error = f"line {line}: empty prompt"
    return prompts_csv.settle_ids(rows)


class MusicJob(job.ManifestJob):
    """The music job on the shared core: prompt, duration and seed per row; similar lengths share a batch."""

    FIELDS = MANIFEST_FIELDS

    def fingerprint(self, row: MusicRow, model: str) -> dict[str, str]:
        return {"model": model, "prompt_sha1": job.sha1(row.prompt), "requested_s": str(row.duration_s),
                "seed": str(row.seed)}

    def prepare(self, engine: SpeechEngine) -> None:
        music_engine_check(engine)

    def request(self, engine: SpeechEngine, row: MusicRow) -> MusicRequest:
        req = MusicRequest(text=row.prompt, duration_s=row.duration_s, seed=row.seed)
        engine.check(req)
        return req

    def order(self, ready: list[tuple[MusicRow, Any]]) -> list[tuple[MusicRow, Any]]:
        return sorted(ready, key=lambda item: -item[0].duration_s)  # similar lengths share a batch (rows only:
        # the Ray driver cuts the batches before any request exists)

    def ok_result(self, row: MusicRow, req: MusicRequest, model: str, audio: Audio, name: str, size: int,
                  took: float) -> MusicRowResult:
        return MusicRowResult(
            id=row.id, file=name, model=model, sample_rate=audio.sample_rate, duration_s=round(audio.duration, 3),
            requested_s=row.duration_s, seed=row.seed, elapsed_s=round(took, 4), status="ok",
            prompt_sha1=job.sha1(row.prompt), bytes=size, prompt=row.prompt)

    def error_result(self, row: MusicRow, model: str, error: str) -> MusicRowResult:
        if row.error:  # the row could not be read: no request to describe
            return MusicRowResult(row.id, status="error", error=error, prompt=row.prompt)
        return MusicRowResult(row.id, model=model, requested_s=row.duration_s, seed=row.seed, status="error",
                              error=error, prompt=row.prompt)

    def skipped_result(self, prev: dict[str, str]) -> MusicRowResult:
        return MusicRowResult(**prev, skipped=True)


def run_music_batch(csv_path: Path, opts: MusicBatchOptions, cache: EngineCache,
                    progress: Callable[[MusicRowResult], None] | None = None,
                    on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """Render every row of `csv_path` into `opts.out_dir`. Raises UsageError for file-level problems;
    BatchInterrupted (Ctrl-C) and BatchStopped (a full disk) carry the summary of what was done."""
    job.check_format(opts.fmt)
    rows = read_music_prompts(csv_path, opts.duration_s)
    job.check_writable(opts.out_dir)
    if on_rows:
        on_rows(len(rows))
    return job.run_job(MusicJob(rows, opts, cache, progress))


def run_music_batch_ray(csv_path: Path, opts: MusicBatchOptions, ray_opts: RayOptions | None = None,
                        out: str | None = None, progress: Callable[[MusicRowResult], None] | None = None,
                        on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """`asn music batch --ray`: the same rows, outputs, manifest and resume as `run_music_batch`, rendered by an
    actor pool of engine replicas on a Ray cluster (`jobs/ray_runner.py`, the runner `asn tts batch --ray`
    shares). `out` (a folder every node sees, or an fsspec URL such as s3://bucket/prefix) overrides
    opts.out_dir; `ray_opts` is a `ray_runner.RayOptions`."""
    from audiosubnet.jobs.ray_runner import RayOptions, import_ray, run_manifest_job_on_ray

    what = "asn music batch --ray"
    job.check_format(opts.fmt)
    rows = read_music_prompts(csv_path, opts.duration_s)
    store = OutputStore(out if out is not None else opts.out_dir)
    import_ray(what)
    store.check_writable()
    if on_rows:
        on_rows(len(rows))
    music = MusicJob(rows, opts, None, progress, store)  # no engine here: the actors have them
    return run_manifest_job_on_ray(music, ray_opts or RayOptions(), what)
