"""`asn clone watch`: voice cloning from folders, crash-safe.

A user drops `vc_source/audio01.wav` (the voice) and `vc_source/audio01.txt` (what to say); the
watcher writes `vc_target/audio01.wav` and moves both inputs to `vc_processed/`. Bad inputs go to
`vc_failed/` with `<stem>.error.txt` giving the reason. Pure logic: the CLI passes options, a
EngineCache and an event callback; the filesystem (`LocalFS`) and the clock (`SystemClock`) are
injectable.

Rules:
- pairs by stem: one audio file (.wav/.flac/.mp3/.ogg) + one UTF-8 .txt; hidden, temporary and
  partial names are ignored; a pair starts only when both files are stable (same size and mtime
  across `settle_s` of observation) and the audio is whole (a WAV holds the data length its header
  declares; other formats decode to the length they declare): a copy that pauses longer than the
  settle time waits for the rest, and fails only if it stays cut short for `orphan_timeout_s`;
- a file whose partner has not arrived `orphan_timeout_s` after it did goes to vc_failed/;
- stable pairs are validated (text, audio), batched and sent to the engine leased from the shared
  EngineCache; one bad pair never blocks the others (the one batch policy, `audiosubnet/batch_policy.py`: a
  failed batch is retried pair by pair; an error fatal for the job stops the watcher with its inputs in place);
- the output is written atomically (temp + fsync + rename); the inputs are then moved with
  link + unlink, so nothing is ever overwritten (collisions get `-1`, `-2`, ...).

Every pair's handling is journaled before each step (`clone_journal`: begin -> output -> input
moves -> done), so it happens exactly once across kill -9 at any instant: on start the watcher
finishes or undoes what a killed one left half done. One watcher per target folder at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.batch_policy import run_each
from audiosubnet.config import CloneSettings, defaults, view
from audiosubnet.engines.base import EngineLease, EngineSource, SynthesisRequest
from audiosubnet.errors import AsnError, InputError, UsageError
from audiosubnet.jobs.clone_journal import (
    COMPACT_AFTER_LINES,
    ERROR_SUFFIX,
    JOURNAL_NAME,
    LOCK_NAME,
    FileInfo,
    Journal,
    LocalFS,
    WatchLock,
    finish_moves,
    free_names,
    recover_record,
)

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

TEXT_SUFFIX = ".txt"
IGNORED_PREFIXES = (".", "~", "#")
IGNORED_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".swp",
                    ".swx", "~", ".lock", ":zone.identifier")


# ---- options and results -------------------------------------------------------------------
_CLONE = defaults(CloneSettings)  # one source of defaults: the settings section


@dataclass
class WatchOptions:
    """The watcher's view of the `clone` settings section (`WatchOptions.of`); its defaults are that section's.
    `model` "auto" is resolved by the watcher (`resolve_clone_model`)."""

    source: Path = _CLONE["source"]
    target: Path = _CLONE["target"]
    processed: Path = _CLONE["processed"]
    failed: Path = _CLONE["failed"]
    model: str = _CLONE["model"]
    fmt: str = _CLONE["format"]
    settle_s: float = _CLONE["settle_s"]
    poll_s: float = _CLONE["poll_s"]
    orphan_timeout_s: float = _CLONE["orphan_timeout_s"]
    max_batch: int = _CLONE["max_batch"]
    max_text_chars: int = _CLONE["max_text_chars"]
    max_text_bytes: int = _CLONE["max_text_bytes"]
    min_reference_s: float = _CLONE["min_reference_s"]
    max_reference_s: float = _CLONE["max_reference_s"]
    max_audio_bytes: int = _CLONE["max_audio_bytes"]
    use_watchdog: bool = True

    @classmethod
    def of(cls, c: CloneSettings, **overrides: Any) -> WatchOptions:
        return view(c, cls, fmt=c.format, **overrides)


@dataclass
class PairResult:
    stem: str
    status: str  # ok | failed
    output: str = ""
    reason: str = ""
    inputs: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class WatchSummary:
    ok: int = 0
    failed: int = 0
    recovered: int = 0
    audio_seconds: float = 0.0
    engine_seconds: float = 0.0
    results: list[PairResult] = field(default_factory=list)

    def add(self, r: PairResult) -> None:
        self.results.append(r)
        if r.status == "ok":
            self.ok += 1
            self.audio_seconds += r.audio_s
        else:
            self.failed += 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the clock (injectable) ----------------------------------------------------------------
class SystemClock:
    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


# ---- names ---------------------------------------------------------------------------------
def ignored_name(name: str) -> bool:
    low = name.lower()
    return low.startswith(IGNORED_PREFIXES) or low.endswith(IGNORED_SUFFIXES)


def kind_of(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    if suffix in audiolib.AUDIO_SUFFIXES:
        return "audio"
    if suffix == TEXT_SUFFIX:
        return "text"
    return None


# ---- the watcher ---------------------------------------------------------------------------
@dataclass
class _Pair:
    stem: str
    audio: FileInfo | None
    text: FileInfo | None
    reason: str = ""  # set when the pair is to be failed
    extra: list[FileInfo] = field(default_factory=list)  # more files of the same stem (ambiguous)

    @property
    def files(self) -> list[FileInfo]:
        return [f for f in (self.audio, self.text, *self.extra) if f is not None]


@dataclass
class _Job:
    pair: _Pair
    text: str = ""
    reference: audiolib.Audio | None = None


EventFn = Callable[[str, object], None]


class CloneWatcher:
    """Scan -> stable pairs -> journal -> engine -> atomic output -> move inputs -> journal done."""

    def __init__(self, opts: WatchOptions, cache: EngineSource, *, fs: LocalFS | None = None,
                 clock: SystemClock | None = None, on_event: EventFn | None = None):
        if opts.model == "auto":
            opts = replace(opts, model=resolve_clone_model(opts.model))
        self.opts = opts
        self.cache = cache
        self.fs = fs or LocalFS()
        self.clock = clock or SystemClock()
        self.on_event = on_event or (lambda kind, data: None)
        self.summary = WatchSummary()
        self.journal = Journal(opts.target / JOURNAL_NAME)
        self._lock = WatchLock(opts.target / LOCK_NAME)
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (sig, first seen with it)
        # inputs that cannot be moved (permissions...): left alone until they change, never cloned twice
        self._stuck: dict[str, tuple[int, int] | None] = {}
        self._partial: dict[str, tuple[tuple[int, int], float]] = {}  # incomplete audio: (sig, since)
        self._wake = threading.Event()
        self._observer: BaseObserver | None = None
        self.waiting = 0

    # ---- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        o = self.opts
        if not o.source.is_dir():
            raise UsageError(f"source folder {o.source} does not exist",
                             hint=f"Create it (mkdir -p {o.source}) or pass --source.")
        for d in (o.target, o.processed, o.failed):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create folder {d}: {e.strerror or e}") from e
            if not os.access(d, os.W_OK):
                raise UsageError(f"folder {d} is not writable")
        if o.fmt not in audiolib.FORMATS:
            raise UsageError(f"unknown audio format '{o.fmt}'", hint="Use wav, flac, mp3 or ogg.")
        self._lock.acquire()
        self.recover()

    def close(self) -> None:
        self._stop_observer()
        self._lock.release()

    def __enter__(self) -> CloneWatcher:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- recovery --------------------------------------------------------------------------
    def recover(self) -> int:
        """Finish or undo what a killed watcher left half done. Returns the entries handled."""
        pending = self.journal.pending()
        for rec in pending:
            try:
                recover_record(rec, self.journal, self.fs, source=self.opts.source, target=self.opts.target)
            except OSError as e:  # e.g. no permission to move: keep the record, skip its inputs, go on
                log.error("cannot finish %s (%s); its inputs are left where they are", rec.get("stem"), e)
                if Path(rec.get("source_dir") or self.opts.source) == self.opts.source.resolve():
                    self._mark_stuck([m[0] for m in rec.get("moves", [])])
        self.summary.recovered += len(pending)
        if pending or self.journal.lines > COMPACT_AFTER_LINES:
            self.journal.compact()
        # temp files of our atomic writes and copies that a kill left behind
        for folder in (self.opts.target, self.opts.processed, self.opts.failed):
            for name in self.fs.list_names(folder):
                if name.startswith(".") and name.endswith(".part") and not name.startswith(".asn-clone"):
                    self.fs.unlink(folder / name)
        return len(pending)

    def _mark_stuck(self, names: Iterable[str]) -> None:
        for n in names:
            self._stuck[n] = self.fs.stat_sig(self.opts.source / n)
            self._seen.pop(n, None)

    # ---- scanning --------------------------------------------------------------------------
    def _observe(self) -> dict[str, FileInfo]:
        now = self.clock.time()
        files = {f.name: f for f in self.fs.scan(self.opts.source)
                 if not ignored_name(f.name) and kind_of(f.name) is not None}
        for name in list(self._stuck):
            f = files.get(name)
            if f is not None and f.sig == self._stuck[name]:
                del files[name]  # unchanged since it could not be moved
            else:
                del self._stuck[name]
        for name, f in files.items():
            prev = self._seen.get(name)
            if prev is None or prev[0] != f.sig:
                self._seen[name] = (f.sig, now)
        for name in list(self._seen):
            if name not in files:
                del self._seen[name]
        for name in list(self._partial):
            if name not in files:
                del self._partial[name]
        return files

    def _stable(self, f: FileInfo, now: float) -> bool:
        seen = self._seen.get(f.name)
        return seen is not None and seen[0] == f.sig and now - seen[1] >= self.opts.settle_s - 1e-3

    def _classify(self, files: dict[str, FileInfo]) -> tuple[list[_Pair], list[_Pair], int]:
        """(ready pairs, pairs to fail, files still waiting)."""
        now = self.clock.time()
        groups: dict[str, list[FileInfo]] = {}
        for f in files.values():
            groups.setdefault(Path(f.name).stem, []).append(f)
        ready, bad, waiting = [], [], 0
        for stem in sorted(groups):
            fs_ = groups[stem]
            if not all(self._stable(f, now) for f in fs_):
                waiting += len(fs_)
                continue
            audios = sorted((f for f in fs_ if kind_of(f.name) == "audio"), key=lambda f: f.name)
            texts = sorted((f for f in fs_ if kind_of(f.name) == "text"), key=lambda f: f.name)
            if len(audios) > 1 or len(texts) > 1:
                bad.append(_Pair(stem, audios[0] if audios else None, texts[0] if texts else None,
                                 reason=f"several files share the name '{stem}': "
                                        f"{', '.join(f.name for f in fs_)}; keep one audio file and one .txt",
                                 extra=audios[1:] + texts[1:]))
                continue
            a, t = (audios[0] if audios else None), (texts[0] if texts else None)
            if a and t:
                ready.append(_Pair(stem, a, t))
                continue
            lone = a or t
            assert lone is not None
            age = now - max(lone.arrived, self._seen[lone.name][1])
            if age >= self.opts.orphan_timeout_s:
                want = f"{stem}.txt" if a else f"an audio file {stem}.wav/.flac/.mp3/.ogg"
                bad.append(_Pair(stem, a, t, reason=f"{lone.name} has no partner: {want} did not arrive "
                                                    f"within {self.opts.orphan_timeout_s:g} s"))
            else:
                waiting += 1
        return ready, bad, waiting

    # ---- one pass ----------------------------------------------------------------------------
    def tick(self) -> list[PairResult]:
        """Scan once and handle every pair that is ready. Returns the results of this pass."""
        files = self._observe()
        ready, bad, self.waiting = self._classify(files)
        results = [self._fail(p, p.reason) for p in bad]
        jobs = []
        for p in ready:
            job, reason = self._validate(p)
            if job is None:
                if reason is not None:
                    results.append(self._fail(p, reason))
                continue
            jobs.append(job)
        if jobs:
            # a model that cannot load stops the watcher here, before any pair is touched
            with self.cache.engine(self.opts.model) as engine:
                size = max(1, min(self.opts.max_batch, engine.capabilities.max_batch))
                for i in range(0, len(jobs), size):
                    results.extend(self._run_batch(engine, jobs[i:i + size]))
        if self.journal.lines > COMPACT_AFTER_LINES:
            self.journal.compact()
        return results

    def _changed(self, f: FileInfo) -> bool:
        return self.fs.stat_sig(self.opts.source / f.name) != f.sig

    def _validate(self, p: _Pair) -> tuple[_Job | None, str | None]:
        """A job, or (None, reason to fail), or (None, None) when a file changed under us (retry later)."""
        o = self.opts
        assert p.audio is not None and p.text is not None
        # text
        if p.text.size > o.max_text_bytes:
            return None, f"{p.text.name} is {p.text.size:,} bytes; the limit is {o.max_text_bytes:,}"
        try:
            raw = self.fs.read_bytes(o.source / p.text.name, o.max_text_bytes)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            return None, f"cannot read {p.text.name}: {e.strerror or e}"
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = " ".join(raw.decode("utf-8").split())
        except UnicodeDecodeError as e:
            return None, f"{p.text.name} is not UTF-8 text (byte {e.start})"
        if not text:
            return None, f"{p.text.name} is empty"
        if len(text) > o.max_text_chars:
            return None, f"{p.text.name} has {len(text):,} characters; the limit is {o.max_text_chars:,}"
        if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
            return None, f"{p.text.name} contains control characters"
        # audio
        if p.audio.size > o.max_audio_bytes:
            return None, f"{p.audio.name} is {p.audio.size / 2**20:.1f} MiB; the limit is " \
                         f"{o.max_audio_bytes / 2**20:.0f} MiB"
        try:
            data = self.fs.read_bytes(o.source / p.audio.name)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            return None, f"cannot read {p.audio.name}: {e.strerror or e}"
        why = audiolib.incomplete(data)
        if why is not None:
            return self._incomplete(p.audio, why)
        self._partial.pop(p.audio.name, None)
        try:
            ref = audiolib.decode(data, max_seconds=o.max_reference_s)
        except InputError as e:
            if self._changed(p.audio):  # still being written after all: not its fault
                return None, None
            msg = str(e)
            if "long; the limit" in msg:
                return None, f"{p.audio.name}: {msg} (references are {o.min_reference_s:g}-{o.max_reference_s:g} s)"
            return None, f"{p.audio.name}: {msg}"
        if self._changed(p.audio) or self._changed(p.text):
            return None, None
        if ref.duration < o.min_reference_s:
            return None, (f"{p.audio.name} is {ref.duration:.2f} s long; a reference needs at least "
                          f"{o.min_reference_s:g} s of speech")
        if not np.isfinite(ref.samples).all():
            return None, f"{p.audio.name} has non-finite samples"
        if audiolib.rms_db(ref.samples) < -60.0:
            return None, f"{p.audio.name} is silent"
        return _Job(p, text, ref), None

    def _incomplete(self, f: FileInfo, why: str) -> tuple[None, str | None]:
        """An audio file whose data is not all there yet (a copy that paused longer than the settle
        time): wait for it, and fail it only once it has stayed so, unchanged, for the orphan timeout."""
        now = self.clock.time()
        first = self._partial.get(f.name)
        if first is None or first[0] != f.sig:
            self._partial[f.name] = first = (f.sig, now)
            log.info("%s is not complete yet (%s): waiting for the rest", f.name, why)
        if now - first[1] >= self.opts.orphan_timeout_s:
            self._partial.pop(f.name, None)
            return None, (f"{f.name} is incomplete: {why}, and it did not change for "
                          f"{self.opts.orphan_timeout_s:g} s")
        self._seen[f.name] = (f.sig, now)  # settle again before the next look
        self.waiting += 1
        return None, None

    def _run_batch(self, engine: EngineLease, jobs: list[_Job]) -> list[PairResult]:
        if not jobs:
            return []
        o = self.opts
        begins = []
        taken_out: set[str] = set()
        taken_moved: set[str] = set()  # names chosen earlier in this batch ('a' -> a-1.wav vs a pair 'a-1')
        for job in jobs:
            p = job.pair
            assert p.audio is not None and p.text is not None
            out_name = free_names(o.target, [f"{p.stem}.{o.fmt}"], self.fs, taken_out)[0]
            moved = free_names(o.processed, [p.audio.name, p.text.name], self.fs, taken_moved)
            taken_out.add(out_name)
            taken_moved.update(moved)
            begins.append({"op": "begin", "id": uuid.uuid4().hex, "kind": "clone", "stem": p.stem,
                           "output": out_name, "source_dir": str(o.source.resolve()),
                           "dest_dir": str(o.processed.resolve()),
                           "moves": [[p.audio.name, moved[0]], [p.text.name, moved[1]]],
                           "t": round(self.clock.time(), 3)})
        self.journal.append(*begins)
        reqs = [SynthesisRequest(text=j.text, reference=j.reference, reference_text=None) for j in jobs]
        t0 = time.perf_counter()
        try:
            audios = run_each(engine, reqs)  # the one batch policy: a pair whose engine call failed fails alone
        except Exception:  # fatal for the job (the machine's or the model's): the watcher stops, inputs stay
            self.journal.append(*({"op": "abort", "id": b["id"]} for b in begins))
            raise
        elapsed = time.perf_counter() - t0
        self.summary.engine_seconds += elapsed
        results = []
        for job, rec, audio in zip(jobs, begins, audios, strict=True):
            if isinstance(audio, AsnError):
                self.journal.append({"op": "abort", "id": rec["id"]})
                reason = str(audio) if isinstance(audio, InputError) else f"the engine failed on this pair ({audio})"
                results.append(self._fail(job.pair, reason))
                continue
            results.append(self._commit(job, rec, audio, elapsed / len(jobs)))
        return results

    def _commit(self, job: _Job, rec: dict[str, Any], audio: audiolib.Audio, elapsed: float) -> PairResult:
        o = self.opts
        data = audiolib.encode(audio, o.fmt)
        self.fs.write_atomic(o.target / rec["output"], data)
        try:
            finish_moves(self.fs, rec, o.source, o.processed)
        except OSError as e:  # the output exists: its record stays open so no restart clones it again
            log.error("%s was cloned to %s but its inputs cannot be moved (%s); they stay in %s", job.pair.stem,
                      rec["output"], e, o.source)
            self._mark_stuck([m[0] for m in rec["moves"]])
        else:
            self.journal.append({"op": "done", "id": rec["id"]})
        r = PairResult(job.pair.stem, "ok", output=str(o.target / rec["output"]),
                       inputs=[m[1] for m in rec["moves"]], audio_s=audio.duration, elapsed_s=elapsed)
        self.summary.add(r)
        self.on_event("ok", r)
        log.debug("%s -> %s (%.1f s of audio)", job.pair.stem, r.output, r.audio_s)
        return r

    def _fail(self, p: _Pair, reason: str) -> PairResult:
        o = self.opts
        names = [f.name for f in p.files]
        moved = free_names(o.failed, names + [f"{p.stem}{ERROR_SUFFIX}"], self.fs)
        error_file = moved[-1]
        text = (f"{reason}\n\nfiles: {', '.join(names)}\nwhen: "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.clock.time()))}\n"
                f"fix the input and drop it into {o.source} again.\n")
        rec = {"op": "begin", "id": uuid.uuid4().hex, "kind": "fail", "stem": p.stem,
               "source_dir": str(o.source.resolve()), "dest_dir": str(o.failed.resolve()),
               "error_file": error_file, "error_text": text,
               "moves": [[n, m] for n, m in zip(names, moved[:-1], strict=True)]}
        self.journal.append(rec)
        self.fs.write_atomic(o.failed / error_file, text.encode())
        try:
            finish_moves(self.fs, rec, o.source, o.failed)
        except OSError as e:
            log.error("cannot move %s to %s (%s); leaving it in %s", ", ".join(names), o.failed, e, o.source)
            self.fs.unlink(o.failed / error_file)
            self.journal.append({"op": "abort", "id": rec["id"]})
            self._mark_stuck(names)
            reason = f"{reason} (and it could not be moved: {e})"
        else:
            self.journal.append({"op": "done", "id": rec["id"]})
        for n in names:
            self._seen.pop(n, None)
        r = PairResult(p.stem, "failed", reason=reason, inputs=[m for _, m in rec["moves"]])
        self.summary.add(r)
        self.on_event("failed", r)
        log.debug("%s failed: %s", p.stem, reason)
        return r

    # ---- loops -------------------------------------------------------------------------------
    def run_once(self) -> WatchSummary:
        """Process what is in the source folder now, then return (for cron)."""
        self._observe()
        self.clock.sleep(self.opts.settle_s)
        self.tick()
        return self.summary

    def run(self, stop: threading.Event | None = None) -> WatchSummary:
        """Watch until `stop` is set (or KeyboardInterrupt)."""
        stop = stop or threading.Event()
        self._start_observer()
        self.on_event("watching", self)
        while not stop.is_set():
            self.tick()
            self.on_event("idle", self)
            # wake on a filesystem event, or poll; a pending file is rechecked once it can be stable
            wait = self.opts.poll_s if (self._observer is None or self.waiting) else max(self.opts.poll_s, 5.0)
            if self.waiting:
                wait = min(wait, max(0.05, self.opts.settle_s / 2))
            if self._wake.wait(timeout=wait):
                self._wake.clear()
                # let a burst of events (a copy in progress) settle a little before scanning
                stop.wait(min(0.2, self.opts.settle_s / 4))
        self._stop_observer()
        return self.summary

    def _start_observer(self) -> None:
        if not self.opts.use_watchdog:
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.info("watchdog is not installed: polling %s every %g s", self.opts.source, self.opts.poll_s)
            return
        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        try:
            obs = Observer()
            obs.schedule(_Handler(), str(self.opts.source), recursive=False)
            obs.daemon = True
            obs.start()
            self._observer = obs
        except Exception as e:  # inotify watch limits, unsupported filesystems
            log.warning("file events unavailable (%s): polling %s every %g s", e, self.opts.source,
                        self.opts.poll_s)
            self._observer = None

    def _stop_observer(self) -> None:
        obs, self._observer = self._observer, None
        if obs is not None:
            with contextlib.suppress(Exception):
                obs.stop()
                obs.join(timeout=2)


def resolve_clone_model(model: str | None) -> str:
    """'auto' -> the neural cloner when its weights are here, else the offline WORLD fallback."""
    from audiosubnet.engines import registry

    if not model or model == "auto":
        try:
            cls = registry.get_engine_class("pocket")
            if cls.status(cls.default_model).downloaded:
                return f"pocket:{cls.default_model}"
        except AsnError:
            pass
        return "world"
    engine, name = registry.parse_model_id(model)
    cls = registry.get_engine_class(engine)
    try:
        caps = cls(name).capabilities
    except AsnError:
        return model  # can't tell before loading (e.g. not downloaded): the load will say why
    if not caps.clone:
        raise UsageError(f"model '{model}' cannot clone voices",
                         hint="Use a clone engine: world (offline), pocket, speecht5-clone.")
    return model
