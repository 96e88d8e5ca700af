"""`asn tts batch`: a CSV of prompts -> one audio file per row + a manifest.

Pure logic: the CLI passes paths, options and a progress callback; the engines come from the
process ModelCache. Guarantees:
- bad rows get a manifest row with status `error` and a reason; the rest continues;
- outputs and the manifest are written atomically (temp + rename), so an interrupted run never
  leaves a truncated file under a final name; Ctrl-C flushes the manifest before stopping;
- a rerun skips rows whose output exists and matches the manifest (same text, model, voice,
  format and size); `force` regenerates.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audiosubnet import audio as audiolib
from audiosubnet.engines import longform, registry
from audiosubnet.engines.base import SynthesisRequest
from audiosubnet.engines.cache import ModelCache
from audiosubnet.errors import AsnError, InputError, UsageError
from audiosubnet.jobs.storage import OutputStore

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
MANIFEST_FIELDS = ["id", "file", "model", "voice", "sample_rate", "duration_s", "elapsed_s", "status", "error",
                   "text_sha1", "bytes", "text"]
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FLUSH_EVERY_S = 1.0


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
        d = asdict(self)
        d.pop("skipped")
        return {k: ("" if v is None else str(v)) for k, v in d.items()}


@dataclass
class BatchOptions:
    out_dir: Path = Path("tts_target")
    fmt: str = "wav"
    model: str = "auto"
    voice: str | None = None
    force: bool = False
    max_batch: int = 16
    seed: int | None = None  # set: each row's noise comes from (seed, id), the same audio on any machine


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
    rows: list[RowResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.manifest_row() for r in self.rows]
        return d


# ---- reading the CSV ---------------------------------------------------------------------
def _has_bad_utf8(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def read_prompts(path: Path) -> list[PromptRow]:
    """Parse the prompts CSV. File-level problems raise UsageError; row problems mark the row."""
    if not path.exists():
        raise UsageError(f"prompts file {path} does not exist", hint="Pass a CSV with a 'text' column.")
    if not path.is_file():
        raise UsageError(f"{path} is not a file", hint="Pass a CSV with a 'text' column.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise UsageError(f"prompts file {path} is empty", hint="Add a header line 'text' and one prompt per row.")
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
    if "text" in first:
        header = first
        data = records[1:]
        if not data:
            raise UsageError(f"prompts file {path} has a header but no rows")
    elif len(records[0][1]) == 1:
        header = ["text"]  # header-less, one column
        data = records
    else:
        raise UsageError(
            f"prompts file {path} has no 'text' column",
            hint="Start the file with a header such as: id,text  (or use a single column of prompts).",
        )
    col = {name: i for i, name in enumerate(header) if name}
    rows: list[PromptRow] = []
    for n, (line, fields) in enumerate(data, start=1):
        row = PromptRow(number=n, line=line, id=f"{n:04d}")

        def get(name: str, fields: list[str] = fields) -> str:
            i = col.get(name)
            return fields[i].strip() if i is not None and i < len(fields) else ""

        if "id" in col and get("id"):
            row.id = get("id")
        if len(fields) != len(header):
            row.error = f"line {line}: {len(fields)} columns where the header has {len(header)}"
        elif any(_has_bad_utf8(f) for f in fields):
            row.id = row.id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            row.error = f"line {line}: invalid UTF-8"
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
    seen: set[str] = set()
    for row in rows:
        if not ID_RE.match(row.id):
            bad = row.id
            row.id = f"row{row.number:04d}"
            row.error = row.error or f"line {row.line}: id '{bad}' is not a safe file name (letters, digits, . _ -)"
        elif row.id in seen:
            dup = row.id
            row.id = f"{dup}~row{row.number}"
            row.error = row.error or f"line {row.line}: duplicate id '{dup}'"
        seen.add(row.id)
    return rows


# ---- manifest ----------------------------------------------------------------------------
def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        return parse_manifest(path.read_bytes(), str(path))
    except OSError as e:
        log.warning("ignoring unreadable manifest %s: %s", path, e)
        return {}


def parse_manifest(data: bytes, where: str = "manifest") -> dict[str, dict[str, str]]:
    """Manifest rows by id; an unreadable manifest counts as none (every row is rendered again)."""
    try:
        return {r["id"]: r for r in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")) if r.get("id")}
    except (UnicodeDecodeError, csv.Error, KeyError) as e:
        log.warning("ignoring unreadable manifest %s: %s", where, e)
        return {}


def manifest_bytes(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    audiolib.write_atomic(path, manifest_bytes(rows))


def row_seed(seed: int | None, row_id: str) -> int | None:
    """The row's seed: derived from the job's seed and the row id, so it does not depend on which worker,
    batch or order renders the row. None (no job seed) keeps the engine's fresh noise."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha1(f"{seed}:{row_id}".encode()).digest()[:8], "big") & (2**62 - 1)


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
class _Run:
    """One run over the parsed rows. The Ray job (tts_batch_ray) reuses it: its driver plans and keeps the
    manifest, its actors render; outputs and the manifest go through `store` (a folder or an fsspec URL)."""

    def __init__(self, rows: list[PromptRow], opts: BatchOptions, cache: ModelCache,
                 progress: Callable[[RowResult], None] | None, store: OutputStore | None = None):
        self.opts, self.cache, self.progress = opts, cache, progress
        self.store = store or OutputStore(opts.out_dir)
        self.rows = rows
        self.manifest_path = opts.out_dir / MANIFEST_NAME
        self.previous = self.load_previous()
        self.results: dict[str, RowResult] = {}
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
        self.save_manifest(current + kept)
        self.last_flush = now

    def load_previous(self) -> dict[str, dict[str, str]]:
        data = self.store.read(MANIFEST_NAME)
        return parse_manifest(data, self.store.path(MANIFEST_NAME)) if data else {}

    def save_manifest(self, rows: list[dict[str, str]]) -> None:
        self.store.write(MANIFEST_NAME, manifest_bytes(rows))

    def done(self, res: RowResult) -> None:
        self.results[res.id] = res
        if self.progress:
            self.progress(res)
        self.flush()

    def resumable(self, row: PromptRow, model: str, voice: str) -> RowResult | None:
        prev = self.previous.get(row.id)
        if self.opts.force or not prev or prev.get("status") != "ok":
            return None
        name = prev.get("file", "")
        want = {"model": model, "voice": voice, "text_sha1": _sha1(row.text)}
        if any(prev.get(k) != v for k, v in want.items()) or Path(name).suffix != f".{self.opts.fmt}":
            return None
        size = self.store.size(name)
        if size is None or str(size) != prev.get("bytes"):
            return None
        fields = {k: prev.get(k, "") for k in MANIFEST_FIELDS}
        return RowResult(**fields, skipped=True)

    def run(self) -> None:
        for model, rows in self.plan().items():
            self.run_model(model, rows)

    def plan(self) -> dict[str, list[PromptRow]]:
        """Settle bad rows and rows already done (through done()); the rest, by canonical model id."""
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
        return pending

    def run_model(self, model: str, rows: list[PromptRow]) -> None:
        try:
            with self.cache.engine(model) as engine:
                caps = engine.capabilities
                step = max(1, min(self.opts.max_batch, caps.max_batch)) if caps.batching else 1
                ready = []
                for row in rows:
                    req = SynthesisRequest(text=row.text, voice=row.voice or self.opts.voice, speed=row.speed,
                                           seed=row_seed(self.opts.seed, row.id))
                    try:
                        longform.check(engine, req)  # a text over the engine's limit is spoken in pieces
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
        t0 = time.perf_counter()
        try:
            audios = longform.synthesize(engine, [req for _, req in batch], max_batch=len(batch))
        except AsnError as e:
            if len(batch) > 1:  # isolate the bad row
                for item in batch:
                    self.run_batch(engine, model, [item])
                return
            self.fail(batch[0][0], model, str(e))
            return
        elapsed = time.perf_counter() - t0
        self.engine_seconds += elapsed
        for (row, req), audio in zip(batch, audios, strict=True):
            name = f"{row.id}.{self.opts.fmt}"
            try:
                data = audiolib.encode(audio, self.opts.fmt)
                self.store.write(name, data)
            except OSError as e:
                self.fail(row, model, f"cannot write {name}: {e.strerror or e}")
                continue
            self.done(RowResult(
                id=row.id, file=name, model=model, voice=req.voice or "", sample_rate=audio.sample_rate,
                duration_s=round(audio.duration, 3), elapsed_s=round(elapsed / len(batch), 4), status="ok",
                text_sha1=_sha1(row.text), bytes=len(data), text=row.text,
            ))

    def summary(self, wall_seconds: float, interrupted: bool, manifest: str | None = None) -> BatchSummary:
        results = [self.results[r.id] for r in self.rows if r.id in self.results]
        return BatchSummary(
            total=len(self.rows),
            ok=sum(r.status == "ok" and not r.skipped for r in results),
            skipped=sum(r.skipped for r in results),
            failed=sum(r.status != "ok" for r in results),
            audio_seconds=round(sum(float(r.duration_s or 0) for r in results if not r.skipped), 3),
            engine_seconds=round(self.engine_seconds, 3),
            wall_seconds=round(wall_seconds, 3),
            manifest=manifest or str(self.manifest_path),
            interrupted=interrupted,
            rows=results,
        )

    def fail(self, row: PromptRow, model: str, error: str) -> None:
        self.done(RowResult(row.id, model=model, voice=row.voice or self.opts.voice or "", status="error",
                            error=error, text=row.text))


def run_tts_batch(csv_path: Path, opts: BatchOptions, cache: ModelCache,
                  progress: Callable[[RowResult], None] | None = None,
                  on_rows: Callable[[int], None] | None = None) -> BatchSummary:
    """Render every row of `csv_path` into `opts.out_dir`. Raises UsageError for file-level problems."""
    if opts.fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown format '{opts.fmt}'", hint=f"Choose one of {', '.join(audiolib.FORMATS)}.")
    rows = read_prompts(csv_path)
    check_writable(opts.out_dir)
    if on_rows:
        on_rows(len(rows))
    job = _Run(rows, opts, cache, progress)
    t0 = time.perf_counter()
    interrupted = False
    try:
        job.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        job.flush(force=True)
    summary = job.summary(time.perf_counter() - t0, interrupted)
    if interrupted:
        raise BatchInterrupted(summary)
    return summary


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: the manifest is flushed; carries the partial summary."""

    def __init__(self, summary: BatchSummary):
        super().__init__()
        self.summary = summary
