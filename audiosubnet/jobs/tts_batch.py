"""`asn tts batch`: a CSV of prompts -> one audio file per row + a manifest.

Pure logic: the CLI passes paths, options and a progress callback; the engines come from the
process ModelCache. Guarantees (the job code shared with `asn music batch` is in `jobs/batch.py`):
- bad rows get a manifest row with status `error` and a reason; the rest continues;
- outputs and the manifest are written atomically (temp + rename), so an interrupted run never
  leaves a truncated file under a final name; Ctrl-C flushes the manifest before stopping;
- a rerun skips rows whose output exists and matches the manifest (same text, model, voice,
  format and size); `force` regenerates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiosubnet.engines import registry
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.cache import ModelCache
from audiosubnet.errors import AsnError, InputError
from audiosubnet.jobs import batch as job
from audiosubnet.jobs.batch import (  # noqa: F401  (re-exported: the names this module always had)
    ID_RE,
    MANIFEST_NAME,
    BatchInterrupted,
    BatchSummary,
    check_writable,
    read_manifest,
)

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["id", "file", "model", "voice", "sample_rate", "duration_s", "elapsed_s", "status", "error",
                   "text_sha1", "bytes", "text"]


@dataclass
class PromptRow:
    number: int  # data row number, 1-based (used for default ids and messages)
    line: int  # line in the file
    id: str
    text: str = ""
    model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    error: str | None = None


@dataclass
class RowResult:
    id: str
    file: str = ""
    model: str = ""
    voice: str = ""
    sample_rate: int | str = ""
    duration_s: float | str = ""
    elapsed_s: float | str = ""
    status: str = "error"  # ok | error
    error: str = ""
    text_sha1: str = ""
    bytes: int | str = ""
    text: str = ""
    skipped: bool = field(default=False, compare=False)

    def manifest_row(self) -> dict[str, str]:
        return job.manifest_row(self)


@dataclass
class BatchOptions:
    out_dir: Path = Path("tts_target")
    fmt: str = "wav"
    model: str = "auto"
    voice: str | None = None
    force: bool = False
    max_batch: int = 16


# ---- reading the CSV ---------------------------------------------------------------------
def read_prompts(path: Path) -> list[PromptRow]:
    """Parse the prompts CSV. File-level problems raise UsageError; row problems mark the row."""
    table = job.read_table(path, "text")
    rows: list[PromptRow] = []
    for n, (line, fields) in enumerate(table.records, start=1):
        row = PromptRow(number=n, line=line, id=f"{n:04d}")
        get = job.field_getter(table, fields)
        if get("id"):
            row.id = get("id")
        row.error = job.shape_error(table, line, fields)
        rows.append(row)
        if row.error:
            continue
        row.text = " ".join(get("text").split())
        row.model = get("model") or None
        row.voice = get("voice") or None
        speed = get("speed")
        if speed:
            try:
                row.speed = float(speed)
            except ValueError:
                row.error = f"line {line}: speed '{speed}' is not a number"
        if not row.text and not row.error:
            row.error = f"line {line}: empty text"
    job.settle_ids(rows)
    return rows


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    job.write_manifest(path, rows, MANIFEST_FIELDS)


# ---- the job -----------------------------------------------------------------------------
class _Run(job.ManifestJob):
    def __init__(self, rows: list[PromptRow], opts: BatchOptions, cache: ModelCache,
                 progress: Callable[[RowResult], None] | None):
        super().__init__(rows, opts.out_dir, MANIFEST_FIELDS, progress)
        self.opts, self.cache = opts, cache

    def resumable(self, row: PromptRow, model: str, voice: str) -> RowResult | None:
        want = {"model": model, "voice": voice, "text_sha1": job.sha1(row.text)}
        prev = self.previous_ok(row.id, want, f".{self.opts.fmt}", self.opts.force)
        return RowResult(**prev, skipped=True) if prev is not None else None

    def run(self) -> None:
        pending: dict[str, list[PromptRow]] = {}
        for row in self.rows:
            if row.error:
                self.done(RowResult(row.id, status="error", error=row.error, text=row.text))
                continue
            try:
                model = registry.canonical_id(row.model or self.opts.model or "auto")
            except AsnError as e:
                self.done(RowResult(row.id, model=row.model or "", status="error", error=str(e), text=row.text))
                continue
            voice = row.voice or self.opts.voice or ""
            prev = self.resumable(row, model, voice)
            if prev is not None:
                self.done(prev)
                continue
            pending.setdefault(model, []).append(row)
        for model, rows in pending.items():
            self.run_model(model, rows)

    def run_model(self, model: str, rows: list[PromptRow]) -> None:
        try:
            with self.cache.engine(model) as engine:
                caps = engine.capabilities
                step = max(1, min(self.opts.max_batch, caps.max_batch)) if caps.batching else 1
                ready = []
                for row in rows:
                    req = SynthesisRequest(text=row.text, voice=row.voice or self.opts.voice, speed=row.speed)
                    try:
                        engine.check(req)
                    except InputError as e:
                        self.fail(row, model, f"line {row.line}: {e}")
                        continue
                    ready.append((row, req))
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
            for (row, req), audio in zip(items, audios, strict=True):
                name = f"{row.id}.{self.opts.fmt}"
                try:
                    size = self.write_audio(name, audio, self.opts.fmt)
                except OSError as e:
                    self.fail(row, model, f"cannot write {name}: {e.strerror or e}")
                    continue
                self.done(RowResult(
                    id=row.id, file=name, model=model, voice=req.voice or "", sample_rate=audio.sample_rate,
                    duration_s=round(audio.duration, 3), elapsed_s=round(elapsed / len(items), 4), status="ok",
                    text_sha1=job.sha1(row.text), bytes=size, text=row.text,
                ))

        self.engine_seconds += job.render_isolated(call, batch, ok, lambda item, msg: self.fail(item[0], model, msg))

    def fail(self, row: PromptRow, model: str, error: str) -> None:
        self.done(RowResult(row.id, model=model, voice=row.voice or self.opts.voice or "", status="error",
                            error=error, text=row.text))


def run_tts_batch(csv_path: Path, opts: BatchOptions, cache: ModelCache,
                  progress: Callable[[RowResult], None] | None = None,
                  on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """Render every row of `csv_path` into `opts.out_dir`. Raises UsageError for file-level problems."""
    job.check_format(opts.fmt)
    rows = read_prompts(csv_path)
    check_writable(opts.out_dir)
    if on_rows:
        on_rows(len(rows))
    run = _Run(rows, opts, cache, progress)
    return job.run_job(run, run.run)
