"""What every CSV -> audio-files job shares (`asn tts batch`, `asn music batch`).

- reading the CSV: BOM, blank lines, invalid UTF-8, a header naming the text column or one header-less
  column; rows get ids that are safe file names and unique (a bad or duplicate id marks its row);
- the manifest (`manifest.csv` in the output folder): read, written atomically (temp + rename), flushed
  at most once a second while running and always at the end (also on Ctrl-C); rows of earlier runs that
  the current CSV does not mention are kept;
- resume: a row whose earlier manifest row says ok, whose output file exists with the recorded size and
  whose fingerprint (model, text hash, job-specific keys) matches is skipped;
- one failure policy: a batch that raises is retried item by item, so one bad row fails alone;
- the run: Ctrl-C flushes the manifest, then raises `BatchInterrupted` with the partial summary.

A job supplies its row parsing, its manifest columns and how a batch of rows becomes audio; the rest is here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from audiosubnet import audio as audiolib
from audiosubnet.errors import AsnError, UsageError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FLUSH_EVERY_S = 1.0


# ---- reading the CSV ---------------------------------------------------------------------
def has_bad_utf8(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


@dataclass(frozen=True)
class CsvTable:
    """A prompts CSV: lower-cased header names and the data records as (line number, fields)."""

    header: list[str]
    records: list[tuple[int, list[str]]]

    @property
    def columns(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.header) if name}


def read_table(path: Path, text_column: str = "text", *, hint: str | None = None) -> CsvTable:
    """Parse a CSV whose header names `text_column`, or a header-less single column of texts.
    File-level problems raise UsageError (exit status 2); rows are not judged here."""
    hint = hint or f"Pass a CSV with a '{text_column}' column."
    if not path.exists():
        raise UsageError(f"prompts file {path} does not exist", hint=hint)
    if not path.is_file():
        raise UsageError(f"{path} is not a file", hint=hint)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise UsageError(f"prompts file {path} is empty",
                         hint=f"Add a header line '{text_column}' and one prompt per row.")
    content = raw.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(content, newline=""))
    records: list[tuple[int, list[str]]] = []
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue
        records.append((reader.line_num, fields))
    if not records:
        raise UsageError(f"prompts file {path} has no rows")
    first = [f.strip().lower() for f in records[0][1]]
    if text_column in first:
        if len(records) == 1:
            raise UsageError(f"prompts file {path} has a header but no rows")
        return CsvTable(first, records[1:])
    if len(records[0][1]) == 1:
        return CsvTable([text_column], records)  # header-less, one column
    raise UsageError(
        f"prompts file {path} has no '{text_column}' column",
        hint=f"Start the file with a header such as: id,{text_column}  (or use a single column of prompts).",
    )


def field_getter(table: CsvTable, fields: list[str]) -> Callable[[str], str]:
    col = table.columns

    def get(name: str) -> str:
        i = col.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    return get


def shape_error(table: CsvTable, line: int, fields: list[str]) -> str | None:
    """Why a record cannot be read at all (wrong column count, invalid UTF-8), or None."""
    if len(fields) != len(table.header):
        return f"line {line}: {len(fields)} columns where the header has {len(table.header)}"
    if any(has_bad_utf8(f) for f in fields):
        return f"line {line}: invalid UTF-8"
    return None


class _Row(Protocol):
    number: int
    line: int
    id: str
    error: str | None


def settle_ids(rows: Sequence[_Row]) -> None:
    """Make every id a safe file name and unique; a row whose id had to change is marked with the reason."""
    seen: set[str] = set()
    for row in rows:
        if has_bad_utf8(row.id):
            row.id = row.id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if not ID_RE.match(row.id):
            bad = row.id
            row.id = f"row{row.number:04d}"
            row.error = row.error or f"line {row.line}: id '{bad}' is not a safe file name (letters, digits, . _ -)"
        elif row.id in seen:
            dup = row.id
            row.id = f"{dup}~row{row.number}"
            row.error = row.error or f"line {row.line}: duplicate id '{dup}'"
        seen.add(row.id)


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


def write_manifest(path: Path, rows: list[dict[str, str]], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    audiolib.write_atomic(path, buf.getvalue().encode("utf-8"))


def sha1(text: str) -> str:
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


def check_format(fmt: str) -> None:
    if fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown format '{fmt}'", hint=f"Choose one of {', '.join(audiolib.FORMATS)}.")


# ---- results -----------------------------------------------------------------------------
class Result(Protocol):
    id: str
    status: str
    duration_s: Any
    skipped: bool

    def manifest_row(self) -> dict[str, str]: ...


def manifest_row(result: Any) -> dict[str, str]:
    """A dataclass result as manifest strings (its `skipped` flag is not a column)."""
    d = asdict(result)
    d.pop("skipped", None)
    return {k: ("" if v is None else str(v)) for k, v in d.items()}


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
    rows: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "rows"}
        d["rows"] = [r.manifest_row() for r in self.rows]
        return d


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: the manifest is flushed; carries the partial summary."""

    def __init__(self, summary: BatchSummary):
        super().__init__()
        self.summary = summary


class ManifestJob:
    """The bookkeeping of one run: results by id, progress, throttled atomic manifest flushes, resume."""

    def __init__(self, rows: Sequence[_Row], out_dir: Path, fields: Sequence[str],
                 progress: Callable[[Any], None] | None = None):
        self.rows, self.out_dir, self.fields, self.progress = list(rows), out_dir, list(fields), progress
        self.manifest_path = out_dir / MANIFEST_NAME
        self.previous = read_manifest(self.manifest_path)
        self.results: dict[str, Any] = {}
        self.last_flush = 0.0
        self.engine_seconds = 0.0

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_flush < FLUSH_EVERY_S:
            return
        current = [self.results[r.id].manifest_row() for r in self.rows if r.id in self.results]
        ids = {r.id for r in self.rows}
        # rows of earlier runs that this CSV does not mention are kept, never lost
        kept = [row for i, row in self.previous.items() if i not in ids]
        write_manifest(self.manifest_path, current + kept, self.fields)
        self.last_flush = now

    def done(self, res: Any) -> None:
        self.results[res.id] = res
        if self.progress:
            self.progress(res)
        self.flush()

    def previous_ok(self, row_id: str, want: dict[str, str], suffix: str, force: bool) -> dict[str, str] | None:
        """The earlier manifest row of `row_id` when it can be reused: ok, same `want` values, its file
        present with the recorded size and suffix. None otherwise (or when `force`)."""
        prev = self.previous.get(row_id)
        if force or not prev or prev.get("status") != "ok":
            return None
        f = self.out_dir / prev.get("file", "")
        if any(prev.get(k) != v for k, v in want.items()) or f.suffix != suffix:
            return None
        try:
            if not f.is_file() or str(f.stat().st_size) != prev.get("bytes"):
                return None
        except OSError:
            return None
        return {k: prev.get(k, "") for k in self.fields}

    def write_audio(self, name: str, audio, fmt: str) -> int:
        """Encode and write atomically; returns the bytes written (OSError propagates)."""
        data = audiolib.encode(audio, fmt)
        audiolib.write_atomic(self.out_dir / name, data)
        return len(data)


def render_isolated(call: Callable[[list], list], batch: list, on_ok: Callable[[list, list, float], None],
                    on_fail: Callable[[Any, str], None]) -> float:
    """Run `call` on `batch`; when it raises AsnError, retry item by item so one bad item fails alone.
    `on_ok(items, outputs, seconds)` per successful call; returns the seconds of the successful calls."""
    t0 = time.perf_counter()
    try:
        outputs = call(batch)
    except AsnError as e:
        if len(batch) > 1:
            return sum(render_isolated(call, [item], on_ok, on_fail) for item in batch)
        on_fail(batch[0], str(e))
        return 0.0
    elapsed = time.perf_counter() - t0
    on_ok(batch, outputs, elapsed)
    return elapsed


def run_job(job: ManifestJob, body: Callable[[], None]) -> BatchSummary:
    """Run `body` (which reports through `job.done`), flush, summarise; Ctrl-C raises BatchInterrupted."""
    t0 = time.perf_counter()
    interrupted = False
    try:
        body()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        job.flush(force=True)
    results = [job.results[r.id] for r in job.rows if r.id in job.results]
    summary = BatchSummary(
        total=len(job.rows),
        ok=sum(r.status == "ok" and not r.skipped for r in results),
        skipped=sum(r.skipped for r in results),
        failed=sum(r.status != "ok" for r in results),
        audio_seconds=round(sum(float(r.duration_s or 0) for r in results if not r.skipped), 3),
        engine_seconds=round(job.engine_seconds, 3),
        wall_seconds=round(time.perf_counter() - t0, 3),
        manifest=str(job.manifest_path),
        interrupted=interrupted,
        rows=results,
    )
    if interrupted:
        raise BatchInterrupted(summary)
    return summary
