"""`asn music batch`: a CSV of music prompts -> one audio file per row + a manifest.

Columns: `prompt` (required), optional `id`, `duration` (seconds, default 10), `seed`, `model`. A header-less
file of one column is a list of prompts. Same guarantees as `asn tts batch` (the job code both share is in
`jobs/batch.py`): per-row errors in the manifest, atomic outputs and manifest, Ctrl-C flushes, and a rerun
skips rows whose output exists and whose manifest row matches (model, prompt, duration, seed, format, size).
An unseeded row gets a seed derived from its prompt, so a rerun (or --force) makes the same music.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiosubnet.engines import registry
from audiosubnet.engines.cache import ModelCache
from audiosubnet.engines.music import MAX_DURATION_S, MusicRequest, music_engine_check
from audiosubnet.errors import AsnError, InputError
from audiosubnet.jobs import batch as job
from audiosubnet.jobs.batch import BatchSummary

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
class MusicRowResult:
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

    def manifest_row(self) -> dict[str, str]:
        return job.manifest_row(self)


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


def read_music_prompts(path: Path, default_s: float = 10.0) -> list[MusicRow]:
    table = job.read_table(path, "prompt")
    rows: list[MusicRow] = []
    for n, (line, fields) in enumerate(table.records, start=1):
        row = MusicRow(number=n, line=line, id=f"{n:04d}", duration_s=default_s)
        get = job.field_getter(table, fields)
        if get("id"):
            row.id = get("id")
        row.error = job.shape_error(table, line, fields)
        rows.append(row)
        if row.error:
            continue
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
    job.settle_ids(rows)
    return rows


class _MusicRun(job.ManifestJob):
    def __init__(self, rows: list[MusicRow], opts: MusicBatchOptions, cache: ModelCache,
                 progress: Callable[[MusicRowResult], None] | None):
        super().__init__(rows, opts.out_dir, MANIFEST_FIELDS, progress)
        self.opts, self.cache = opts, cache

    def run(self) -> None:
        pending: dict[str, list[MusicRow]] = {}
        for row in self.rows:
            if row.error:
                self.done(MusicRowResult(row.id, status="error", error=row.error, prompt=row.prompt))
                continue
            try:
                model = registry.canonical_id(row.model or self.opts.model)
            except AsnError as e:
                self.fail(row, row.model or "", str(e))
                continue
            want = {"model": model, "prompt_sha1": job.sha1(row.prompt), "requested_s": str(row.duration_s),
                    "seed": str(row.seed)}
            prev = self.previous_ok(row.id, want, f".{self.opts.fmt}", self.opts.force)
            if prev is not None:
                self.done(MusicRowResult(**prev, skipped=True))
                continue
            pending.setdefault(model, []).append(row)
        for model, rows in pending.items():
            self.run_model(model, rows)

    def run_model(self, model: str, rows: list[MusicRow]) -> None:
        try:
            with self.cache.engine(model) as engine:
                music_engine_check(engine)
                caps = engine.capabilities
                step = max(1, min(self.opts.max_batch, caps.max_batch)) if caps.batching else 1
                ready = []
                for row in rows:
                    req = MusicRequest(text=row.prompt, duration_s=row.duration_s, seed=row.seed)
                    try:
                        engine.check(req)
                    except InputError as e:
                        self.fail(row, model, f"line {row.line}: {e}")
                        continue
                    ready.append((row, req))
                ready.sort(key=lambda item: -item[1].duration_s)  # similar lengths share a batch
                for i in range(0, len(ready), step):
                    self.run_batch(engine, model, ready[i:i + step])
        except (AsnError, ImportError) as e:
            msg = str(e) + (f" ({e.hint})" if getattr(e, "hint", None) else "")
            for row in rows:
                if row.id not in self.results:
                    self.fail(row, model, msg)

    def run_batch(self, engine, model: str, batch: list) -> None:
        def call(items: list) -> list:
            return engine.synthesize([req for _, req in items])

        def ok(items: list, audios: list, elapsed: float) -> None:
            for (row, _), audio in zip(items, audios, strict=True):
                name = f"{row.id}.{self.opts.fmt}"
                try:
                    size = self.write_audio(name, audio, self.opts.fmt)
                except OSError as e:
                    self.fail(row, model, f"cannot write {name}: {e.strerror or e}")
                    continue
                self.done(MusicRowResult(
                    id=row.id, file=name, model=model, sample_rate=audio.sample_rate,
                    duration_s=round(audio.duration, 3), requested_s=row.duration_s, seed=row.seed,
                    elapsed_s=round(elapsed / len(items), 4), status="ok", prompt_sha1=job.sha1(row.prompt),
                    bytes=size, prompt=row.prompt))

        self.engine_seconds += job.render_isolated(call, batch, ok, lambda item, msg: self.fail(item[0], model, msg))

    def fail(self, row: MusicRow, model: str, error: str) -> None:
        self.done(MusicRowResult(row.id, model=model, requested_s=row.duration_s, seed=row.seed, status="error",
                                 error=error, prompt=row.prompt))


def run_music_batch(csv_path: Path, opts: MusicBatchOptions, cache: ModelCache,
                    progress: Callable[[MusicRowResult], None] | None = None,
                    on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """Render every row of `csv_path` into `opts.out_dir`. Raises UsageError for file-level problems."""
    job.check_format(opts.fmt)
    rows = read_music_prompts(csv_path, opts.duration_s)
    job.check_writable(opts.out_dir)
    if on_rows:
        on_rows(len(rows))
    run = _MusicRun(rows, opts, cache, progress)
    return job.run_job(run, run.run)
