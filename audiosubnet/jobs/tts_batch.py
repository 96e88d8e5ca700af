"""`asn tts batch`: a CSV of prompts -> one audio file per row + a manifest.

Pure logic: the CLI passes paths, options and a progress callback; the engines come from the
process ModelCache. Guarantees:
- bad rows get a manifest row with status `error` and a reason; the rest continues;
- outputs are written atomically (temp + rename), so an interrupted run never leaves a truncated
  file under a final name; each finished row is appended to the manifest at once (Ctrl-C or a kill
  loses none), and the manifest is rewritten in CSV order at the end;
- a full disk (or a quota, a read-only or failing folder) stops the batch with one error;
- a rerun skips rows whose output exists and matches the manifest (same text, model, voice,
  format and size); `force` regenerates.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from audiosubnet import audio as audiolib
from audiosubnet.engines import longform, registry
from audiosubnet.engines import text as textlib
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.cache import ModelCache
from audiosubnet.errors import AsnError, InputError, UsageError
from audiosubnet.jobs.prompts_csv import PromptRow, parse_prompts, read_prompts  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
MANIFEST_FIELDS = ["id", "file", "model", "voice", "sample_rate", "duration_s", "elapsed_s", "status", "error",
                   "text_sha1", "bytes", "text"]


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
        d = asdict(self)
        d.pop("skipped")
        return {k: ("" if v is None else str(v)) for k, v in d.items()}

    def typed_row(self) -> dict:
        """The manifest row for JSON: numbers as numbers, missing values as null."""
        d = {k: (v if v != "" else None) for k, v in self.manifest_row().items()}
        for k, conv in (("sample_rate", int), ("bytes", int), ("duration_s", float), ("elapsed_s", float)):
            if d[k] is not None:
                try:
                    d[k] = conv(float(d[k])) if conv is int else conv(d[k])
                except ValueError:
                    d[k] = None
        d["error"] = d["error"] or ""
        d["skipped"] = self.skipped
        return d


@dataclass
class BatchOptions:
    out_dir: Path = Path("tts_target")
    fmt: str = "wav"
    model: str = "auto"
    voice: str | None = None
    force: bool = False
    max_batch: int = 16
    allow_mixed: bool = False  # letters the engine cannot read: dropped with a warning, not a row error


@dataclass
class BatchSummary:
    total: int
    ok: int
    skipped: int
    failed: int
    audio_seconds: float
    engine_seconds: float
    wall_seconds: float
    manifest: str
    interrupted: bool = False
    stopped: str | None = None  # why the batch stopped early (the output folder stopped taking files)
    rows: list[RowResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.typed_row() for r in self.rows]
        return d


# ---- manifest ----------------------------------------------------------------------------
def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return {r["id"]: r for r in csv.DictReader(f) if r.get("id")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as e:
        log.warning("ignoring unreadable manifest %s: %s", path, e)
        return {}


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    audiolib.write_atomic(path, buf.getvalue().encode("utf-8"))


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".asn-write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {folder}: {e.strerror or e}",
                         hint="Choose another folder with --out, or fix its permissions.") from e


# ---- the job -----------------------------------------------------------------------------
#: a write that fails with one of these stops the batch (every later row would fail the same way)
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


class _Run:
    def __init__(self, rows: list[PromptRow], opts: BatchOptions, cache: ModelCache,
                 progress: Callable[[RowResult], None] | None):
        self.opts, self.cache, self.progress = opts, cache, progress
        self.rows = rows
        self.manifest_path = opts.out_dir / MANIFEST_NAME
        self.previous = read_manifest(self.manifest_path)
        self.results: dict[str, RowResult] = {}
        self.engine_seconds = 0.0
        self._journal = None  # the manifest, open for appending one line per finished row

    def open(self) -> None:
        """Start the manifest: the earlier rows (with a clean header), then one line per row as it
        finishes, flushed at once, so that Ctrl-C or a kill loses no finished row; `close` rewrites it
        in CSV order (the latest line of an id wins when it is read back)."""
        write_manifest(self.manifest_path, list(self.previous.values()))
        self._journal = self.manifest_path.open("a", encoding="utf-8", newline="")

    def append(self, res: RowResult) -> None:
        f = self._journal
        if f is None:
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n").writerow(
            res.manifest_row())
        try:
            f.write(buf.getvalue())
            f.flush()
        except OSError as e:
            self._journal = None  # a half-written line must not glue onto the next
            with contextlib.suppress(OSError):
                f.close()
            raise OutputError(f"cannot write {self.manifest_path}: {e.strerror or e}") from e

    def close(self) -> None:
        """The final manifest: this CSV's rows in order, then earlier rows this CSV does not mention."""
        f, self._journal = self._journal, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        current = [self.results[r.id].manifest_row() for r in self.rows if r.id in self.results]
        ids = {r.id for r in self.rows}
        kept = [row for i, row in self.previous.items() if i not in ids]
        try:
            write_manifest(self.manifest_path, current + kept)
        except OSError:  # the appended manifest stays: complete, if not in order
            log.warning("could not put %s in CSV order; it keeps every finished row, in the order they finished",
                        self.manifest_path)

    def done(self, res: RowResult) -> None:
        self.results[res.id] = res
        self.append(res)
        if self.progress:
            self.progress(res)

    def resumable(self, row: PromptRow, model: str, voice: str) -> RowResult | None:
        prev = self.previous.get(row.id)
        if self.opts.force or not prev or prev.get("status") != "ok":
            return None
        f = self.opts.out_dir / (prev.get("file") or "")
        want = {"model": model, "voice": voice, "text_sha1": _sha1(row.text)}
        if any(prev.get(k) != v for k, v in want.items()) or f.suffix != f".{self.opts.fmt}":
            return None
        try:
            if not f.is_file() or str(f.stat().st_size) != prev.get("bytes"):
                return None
        except OSError:
            return None
        fields = {k: prev.get(k) or "" for k in MANIFEST_FIELDS}
        return RowResult(**fields, skipped=True)

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
                        req = self.mixed(engine, row, req)
                        longform.check(engine, req)  # a text over the engine's limit is spoken in pieces
                    except InputError as e:
                        self.fail(row, model, f"line {row.line}: {e}")
                        continue
                    ready.append((row, req))
                for i in range(0, len(ready), step):
                    self.run_batch(engine, model, ready[i:i + step])
        except OutputError:
            raise
        except (AsnError, ImportError) as e:
            msg = str(e) + (f" ({e.hint})" if getattr(e, "hint", None) else "")
            for row in rows:
                if row.id not in self.results:
                    self.fail(row, model, msg)

    def mixed(self, engine, row: PromptRow, req: SynthesisRequest) -> SynthesisRequest:
        """With `allow_mixed`, letters the engine cannot read are dropped, with a warning."""
        if not self.opts.allow_mixed:
            return req
        kept, dropped = textlib.drop_unreadable(req.text, engine.scripts_for(req))
        if not dropped:
            return req
        log.warning("%s: dropped %s that %s cannot read", row.id, textlib.describe(dropped), engine.model_id)
        return replace(req, text=kept)

    def run_batch(self, engine, model: str, batch: list) -> None:
        """Synthesize a batch; each row is written (and in the manifest) the moment the engine hands it over."""
        finished: set[int] = set()
        last = time.perf_counter()
        try:
            for i, audio in longform.synthesize_iter(engine, [req for _, req in batch]):
                took = time.perf_counter() - last  # the engine's time for this row (writes excluded)
                self.engine_seconds += took
                finished.add(i)
                self.write_row(*batch[i], model, audio, took)
                last = time.perf_counter()
        except OutputError:
            raise
        except AsnError as e:
            rest = [item for k, item in enumerate(batch) if k not in finished]
            if len(batch) > 1:  # isolate the bad row
                for item in rest:
                    self.run_batch(engine, model, [item])
                return
            if rest:
                self.fail(rest[0][0], model, str(e))

    def write_row(self, row: PromptRow, req: SynthesisRequest, model: str, audio, took: float) -> None:
        name = f"{row.id}.{self.opts.fmt}"
        try:
            data = audiolib.encode(audio, self.opts.fmt)
            audiolib.write_atomic(self.opts.out_dir / name, data)
        except OSError as e:
            if e.errno in STOP_ERRNOS:
                raise OutputError(f"cannot write {self.opts.out_dir / name}: {e.strerror or e}") from e
            self.fail(row, model, f"cannot write {name}: {e.strerror or e}")
            return
        self.done(RowResult(
            id=row.id, file=name, model=model, voice=req.voice or "", sample_rate=audio.sample_rate,
            duration_s=round(audio.duration, 3), elapsed_s=round(took, 4), status="ok",
            text_sha1=_sha1(row.text), bytes=len(data), text=row.text,
        ))

    def fail(self, row: PromptRow, model: str, error: str) -> None:
        self.done(RowResult(row.id, model=model, voice=row.voice or self.opts.voice or "", status="error",
                            error=error, text=row.text))


class OutputError(AsnError):
    """The output folder stopped taking files (disk full, quota, read-only, I/O error): the batch stops."""

    def __init__(self, message: str):
        super().__init__(message, hint="Free some space (or choose another folder with --out) and run the same "
                                       "command again: finished rows are kept and skipped.")


def run_tts_batch(csv_path: Path | bytes, opts: BatchOptions, cache: ModelCache,
                  progress: Callable[[RowResult], None] | None = None,
                  on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """Render every row of `csv_path` (or of CSV bytes, e.g. stdin's) into `opts.out_dir`.

    Raises UsageError for file-level problems; BatchInterrupted (Ctrl-C) and BatchStopped (the
    output folder stopped taking files) carry the summary of what was done, all of it in the manifest.
    """
    if opts.fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown format '{opts.fmt}'", hint=f"Choose one of {', '.join(audiolib.FORMATS)}.")
    rows = parse_prompts(csv_path, "the prompts on stdin") if isinstance(csv_path, bytes) else read_prompts(csv_path)
    check_writable(opts.out_dir)
    if on_rows:
        on_rows(len(rows))
    job = _Run(rows, opts, cache, progress)
    t0 = time.perf_counter()
    interrupted, stopped = False, None
    try:
        job.open()
    except OSError as e:
        raise OutputError(f"cannot write {job.manifest_path}: {e.strerror or e}") from e
    try:
        job.run()
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as e:
        stopped = e
    finally:
        job.close()
    results = [job.results[r.id] for r in rows if r.id in job.results]
    summary = BatchSummary(
        total=len(rows),
        ok=sum(r.status == "ok" and not r.skipped for r in results),
        skipped=sum(r.skipped for r in results),
        failed=sum(r.status != "ok" for r in results),
        audio_seconds=round(sum(float(r.duration_s or 0) for r in results if not r.skipped), 3),
        engine_seconds=round(job.engine_seconds, 3),
        wall_seconds=round(time.perf_counter() - t0, 3),
        manifest=str(job.manifest_path),
        interrupted=interrupted,
        stopped=str(stopped) if stopped else None,
        rows=results,
    )
    if interrupted:
        raise BatchInterrupted(summary)
    if stopped is not None:
        raise BatchStopped(summary, stopped)
    return summary


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: the manifest is flushed; carries the partial summary."""

    def __init__(self, summary: BatchSummary):
        super().__init__()
        self.summary = summary


class BatchStopped(OutputError):
    """The output folder stopped taking files: the batch stopped; carries the partial summary."""

    def __init__(self, summary: BatchSummary, cause: OutputError):
        super().__init__(cause.message)
        self.summary = summary
