"""The one job core of every CSV -> audio-files job (`asn tts batch`, `asn music batch`, and their Ray runner).

A job (`tts_batch.TtsJob`, `music_batch.MusicJob`) supplies its rows (parsed by `jobs/prompts_csv.py`), its
manifest columns and result type, what makes a row "the same" for resume, and how a row becomes an engine
request; everything else is here, once:
- plan: rows with a parse error and unknown models become error rows; a row whose earlier manifest row says
  ok, whose output exists with the recorded size and suffix and whose fingerprint matches is skipped; the
  rest are grouped by canonical model id;
- render: engine batches of at most `max_batch` rows (on an engine pool, `asn tts batch --devices`, as many at
  once as it has engine processes, each to the least-loaded one; the results are the same); each row is
  written (atomically, through an
  `OutputStore`: a folder or an fsspec URL) and recorded the moment the engine hands it over
  (`synthesize_iter`); failures follow the one batch policy (`audiosubnet/batch_policy.py`): a row whose engine
  call raised fails alone, an error fatal for the job fails the model's remaining rows;
- the manifest (`manifest.csv`): earlier rows are kept; each finished row is appended and flushed at once
  (Ctrl-C or a kill loses none), and at the end it is rewritten in CSV order (in an object store, where
  nothing can be appended, it is rewritten whole now and then instead);
- a write that fails for the whole folder (disk full, quota, read-only, I/O error) stops the job with one
  `OutputError`; Ctrl-C stops it with `BatchInterrupted`; both carry the summary of what was done.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from audiosubnet import audio as audiolib
from audiosubnet.batch_policy import STOP_ERRNOS, is_fatal, run_each
from audiosubnet.engines import registry
from audiosubnet.errors import AsnError, InputError, UsageError
from audiosubnet.jobs.storage import OutputStore

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
FLUSH_EVERY_S = 1.0  # an object-store manifest is rewritten at most this often (and less for long CSVs)
ROWS_PER_FLUSH_S = 20_000  # ... at most one rewrite per this many rows' seconds


# ---- manifest ----------------------------------------------------------------------------
def parse_manifest(data: bytes, where: str = "manifest") -> dict[str, dict[str, str]]:
    """Manifest rows by id (the latest line of an id wins); an unreadable manifest counts as none."""
    try:
        return {r["id"]: r for r in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")) if r.get("id")}
    except (UnicodeDecodeError, csv.Error, KeyError) as e:
        log.warning("ignoring unreadable manifest %s: %s", where, e)
        return {}


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        return parse_manifest(path.read_bytes(), str(path))
    except OSError as e:
        log.warning("ignoring unreadable manifest %s: %s", path, e)
        return {}


def manifest_bytes(rows: Sequence[dict[str, str]], fields: Sequence[str], header: bool = True) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_manifest(path: Path, rows: Sequence[dict[str, str]], fields: Sequence[str]) -> None:
    audiolib.write_atomic(path, manifest_bytes(rows, fields))


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


# ---- results and summary -----------------------------------------------------------------
class JobResult:
    """Mixin of a job's result dataclass: its manifest row (strings) and its typed row (for --json)."""

    NUMBERS: ClassVar[dict[str, type]] = {"sample_rate": int, "bytes": int, "duration_s": float, "elapsed_s": float}
    skipped: bool

    def manifest_row(self) -> dict[str, str]:
        d = asdict(self)  # type: ignore[call-overload]
        d.pop("skipped", None)
        return {k: ("" if v is None else str(v)) for k, v in d.items()}

    def typed_row(self) -> dict[str, Any]:
        """The manifest row for JSON: numbers as numbers, missing values as null."""
        d: dict[str, Any] = {k: (v if v != "" else None) for k, v in self.manifest_row().items()}
        for k, conv in self.NUMBERS.items():
            if d.get(k) is not None:
                try:
                    d[k] = int(float(d[k])) if conv is int else conv(d[k])
                except ValueError:
                    d[k] = None
        d["error"] = d.get("error") or ""
        d["skipped"] = self.skipped
        return d


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
    rows: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rows"}
        d["rows"] = [r.typed_row() for r in self.rows]
        return d


class OutputError(AsnError):
    """The output folder stopped taking files (disk full, quota, read-only, I/O error): the batch stops."""

    def __init__(self, message: str):
        super().__init__(message, hint="Free some space (or choose another folder with --out) and run the same "
                                       "command again: finished rows are kept and skipped.")


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


# ---- the job -----------------------------------------------------------------------------
class ManifestJob:
    """One run over parsed rows. Subclasses set FIELDS and the hooks below; `opts` has out_dir, fmt, model,
    force and max_batch. With `manifest=False` (a Ray actor) the job renders and writes outputs but neither
    reads nor writes a manifest: the driver keeps it."""

    FIELDS: ClassVar[list[str]] = []

    def __init__(self, rows: Sequence[Any], opts: Any, cache: Any, progress: Callable[[Any], None] | None = None,
                 store: OutputStore | None = None, manifest: bool = True):
        self.rows, self.opts, self.cache, self.progress = list(rows), opts, cache, progress
        self.store = store or OutputStore(opts.out_dir)
        self.keeps_manifest = manifest
        self.manifest_path = opts.out_dir / MANIFEST_NAME
        self.previous = self.load_previous() if manifest else {}
        self.results: dict[str, Any] = {}
        self.engine_seconds = 0.0
        self._journal: TextIO | None = None  # the folder manifest, open for appending one line per finished row
        self._dirty = False
        self._last_flush = 0.0
        self._lock = threading.RLock()  # batches run in threads on an engine pool: one row recorded at a time
        self._closed = False  # rows finishing after close() (Ctrl-C while batches run) are not recorded

    # -- hooks --
    def fingerprint(self, row: Any, model: str) -> dict[str, str]:
        """Manifest values that must match for an earlier ok row to count as done."""
        raise NotImplementedError

    def request(self, engine: Any, row: Any) -> Any:
        """The engine request of a row; InputError marks the row (the engine's own check included)."""
        raise NotImplementedError

    def ok_result(self, row: Any, req: Any, model: str, audio: Any, name: str, size: int, took: float) -> Any:
        raise NotImplementedError

    def error_result(self, row: Any, model: str, error: str) -> Any:
        raise NotImplementedError

    def skipped_result(self, prev: dict[str, str]) -> Any:
        raise NotImplementedError

    def prepare(self, engine: Any) -> None:
        """Check that the engine suits the job (raise AsnError to fail all its rows)."""

    def order(self, ready: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The (row, request) pairs in the order they go to the engine."""
        return ready

    def synthesize_iter(self, engine: Any, requests: list[Any]) -> Iterator[tuple[int, Any]]:
        clips: Iterator[tuple[int, Any]] = engine.synthesize_iter(requests)
        return clips

    # -- manifest --
    @property
    def manifest_location(self) -> str:
        return self.store.path(MANIFEST_NAME)

    def load_previous(self) -> dict[str, dict[str, str]]:
        data = self.store.read(MANIFEST_NAME)
        return parse_manifest(data, self.manifest_location) if data else {}

    def _save(self, rows: Sequence[dict[str, str]]) -> None:
        try:
            self.store.write(MANIFEST_NAME, manifest_bytes(rows, self.FIELDS))
        except OSError as e:
            raise OutputError(f"cannot write {self.manifest_location}: {e.strerror or e}") from e

    def _ordered(self) -> list[dict[str, str]]:
        """This CSV's rows in order, then earlier rows this CSV does not mention (never lost)."""
        current = [self.results[r.id].manifest_row() for r in self.rows if r.id in self.results]
        ids = {r.id for r in self.rows}
        return current + [row for i, row in self.previous.items() if i not in ids]

    def open(self) -> None:
        """Start the manifest: the earlier rows (with a clean header), then one line per row as it finishes."""
        if not self.keeps_manifest:
            return
        self._save(list(self.previous.values()))
        if not self.store.remote:
            try:
                self._journal = Path(self.manifest_location).open("a", encoding="utf-8", newline="")  # noqa: SIM115  (closed in close())
            except OSError as e:
                raise OutputError(f"cannot write {self.manifest_location}: {e.strerror or e}") from e

    def append(self, res: Any) -> None:
        if not self.keeps_manifest:
            return
        if self.store.remote:  # nothing to append to: rewrite it whole, now and then
            self._dirty = True
            now = time.monotonic()
            if now - self._last_flush >= max(FLUSH_EVERY_S, len(self.rows) / ROWS_PER_FLUSH_S):
                self._save(self._ordered())
                self._dirty, self._last_flush = False, now
            return
        f = self._journal
        if f is None:
            return
        try:
            f.write(manifest_bytes([res.manifest_row()], self.FIELDS, header=False).decode("utf-8"))
            f.flush()
        except OSError as e:
            self._journal = None  # a half-written line must not glue onto the next
            with contextlib.suppress(OSError):
                f.close()
            raise OutputError(f"cannot write {self.manifest_location}: {e.strerror or e}") from e

    def close(self) -> None:
        """The final manifest, in CSV order (the appended one stays if that cannot be written)."""
        with self._lock:
            self._closed = True
        if not self.keeps_manifest:
            return
        f, self._journal = self._journal, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        try:
            self._save(self._ordered())
        except OutputError:
            log.warning("could not put %s in CSV order; it keeps every finished row, in the order they finished",
                        self.manifest_location)

    # -- bookkeeping --
    def done(self, res: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self.results[res.id] = res
            self.append(res)
            if self.progress:
                self.progress(res)

    def fail(self, row: Any, model: str, error: str) -> None:
        self.done(self.error_result(row, model, error))

    def resumable(self, row: Any, model: str) -> Any | None:
        """The skipped result of a row an earlier run finished: ok, same fingerprint, its file present with the
        recorded size and this run's format. None otherwise (or with --force)."""
        prev = self.previous.get(row.id)
        if self.opts.force or not prev or prev.get("status") != "ok":
            return None
        name = prev.get("file") or ""
        if any(prev.get(k) != v for k, v in self.fingerprint(row, model).items()):
            return None
        if Path(name).suffix != f".{self.opts.fmt}":
            return None
        size = self.store.size(name)
        if size is None or str(size) != prev.get("bytes"):
            return None
        return self.skipped_result({k: prev.get(k) or "" for k in self.FIELDS})

    # -- the run --
    def run(self) -> None:
        self.render(self.plan())

    def plan(self) -> dict[str, list[Any]]:
        """Settle bad rows and rows already done (through done()); the rest, by canonical model id."""
        pending: dict[str, list[Any]] = {}
        for row in self.rows:
            if row.error:
                self.fail(row, "", row.error)
                continue
            try:
                model = registry.canonical_id(row.model or self.opts.model or "auto")
            except AsnError as e:
                self.fail(row, row.model or "", str(e))
                continue
            prev = self.resumable(row, model)
            if prev is not None:
                self.done(prev)
                continue
            pending.setdefault(model, []).append(row)
        return pending

    def render(self, pending: dict[str, list[Any]]) -> None:
        for model, rows in pending.items():
            self.run_model(model, rows)

    def run_model(self, model: str, rows: list[Any]) -> None:
        try:
            with self.cache.engine(model) as engine:
                self.prepare(engine)
                caps = engine.capabilities
                step = max(1, min(self.opts.max_batch, caps.max_batch)) if caps.batching else 1
                ready = []
                for row in rows:
                    try:
                        ready.append((row, self.request(engine, row)))
                    except InputError as e:
                        self.fail(row, model, f"line {row.line}: {e}")
                ready = self.order(ready)
                self.run_batches(engine, model, [ready[i:i + step] for i in range(0, len(ready), step)])
        except OutputError:
            raise
        except Exception as e:  # the model cannot load, or a fatal error of the batch policy: its rows fail
            if not (isinstance(e, AsnError) or is_fatal(e)):
                raise
            hint = getattr(e, "hint", None)
            msg = str(e) + (f" ({hint})" if hint else "")
            for row in rows:
                if row.id not in self.results:
                    self.fail(row, model, msg)

    def run_batches(self, engine: Any, model: str, batches: list[list[tuple[Any, Any]]]) -> None:
        """The batches one after another; on an engine pool (`cache.parallel` engine processes) that many at once,
        each call going to the least-loaded engine. The first OutputError stops the rest."""
        n = min(len(batches), int(getattr(self.cache, "parallel", 1) or 1))
        if n <= 1:
            for b in batches:
                self.run_batch(engine, model, b)
            return
        ex = ThreadPoolExecutor(n, thread_name_prefix="asn-job")
        try:
            for f in [ex.submit(self.run_batch, engine, model, b) for b in batches]:
                f.result()
        finally:  # Ctrl-C or an OutputError: batches not started are dropped; running ones are not recorded
            ex.shutdown(wait=False, cancel_futures=True)

    def run_batch(self, engine: Any, model: str, batch: list[tuple[Any, Any]]) -> None:
        """Synthesize a batch under the one batch policy (`batch_policy.run_each`): each row is written (and in
        the manifest) the moment the engine hands it over; a row whose engine call failed fails alone; a fatal
        error (the model, the machine) propagates to `run_model`, which fails the model's remaining rows."""
        last = time.perf_counter()

        def settle(k: int, result: Any) -> None:
            nonlocal last
            row, req = batch[k]
            if isinstance(result, AsnError):
                self.fail(row, model, str(result))
            else:
                took = time.perf_counter() - last  # the engine's time for this row (writes excluded)
                with self._lock:
                    self.engine_seconds += took
                self.write_row(row, req, model, result, took)
            last = time.perf_counter()

        run_each(engine, [req for _, req in batch], check=False, on_item=settle,
                 iterate=self.synthesize_iter)

    def write_row(self, row: Any, req: Any, model: str, audio: Any, took: float) -> None:
        name = f"{row.id}.{self.opts.fmt}"
        try:
            data = audiolib.encode(audio, self.opts.fmt)
            self.store.write(name, data)
        except OSError as e:
            if e.errno in STOP_ERRNOS:
                raise OutputError(f"cannot write {self.store.path(name)}: {e.strerror or e}") from e
            self.fail(row, model, f"cannot write {name}: {e.strerror or e}")
            return
        self.done(self.ok_result(row, req, model, audio, name, len(data), took))

    def summary(self, wall_seconds: float, interrupted: bool = False, stopped: str | None = None) -> BatchSummary:
        results = [self.results[r.id] for r in self.rows if r.id in self.results]
        return BatchSummary(
            total=len(self.rows),
            ok=sum(r.status == "ok" and not r.skipped for r in results),
            skipped=sum(r.skipped for r in results),
            failed=sum(r.status != "ok" for r in results),
            audio_seconds=round(sum(float(r.duration_s or 0) for r in results if not r.skipped), 3),
            engine_seconds=round(self.engine_seconds, 3),
            wall_seconds=round(wall_seconds, 3),
            manifest=self.manifest_location,
            interrupted=interrupted,
            stopped=stopped,
            rows=results,
        )


def run_job(job: ManifestJob, body: Callable[[], None] | None = None) -> BatchSummary:
    """Open the manifest, run `body` (default `job.run`, reporting through `job.done`), close the manifest,
    summarise. Ctrl-C raises BatchInterrupted, a full disk BatchStopped; both carry the summary."""
    t0 = time.perf_counter()
    job.open()
    interrupted, stopped = False, None
    try:
        (body or job.run)()
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as e:
        stopped = e
    finally:
        job.close()
    summary = job.summary(time.perf_counter() - t0, interrupted, str(stopped) if stopped else None)
    if interrupted:
        raise BatchInterrupted(summary)
    if stopped is not None:
        raise BatchStopped(summary, stopped)
    return summary
