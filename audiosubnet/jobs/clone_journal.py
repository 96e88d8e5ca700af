"""The crash-safe side of `asn clone watch`: the journal, the one-watcher lock, the filesystem moves.

Exactly once, across kill -9 at any instant (the journal, `<target>/.asn-clone-journal.jsonl`):
every pair's handling is a record `begin` (fsynced, naming every final path: the output, the
processed/failed names of both inputs) -> output file -> input moves -> record `done`. Inputs are
only moved after the output exists, and never deleted except as the second half of link+unlink.
On start, each `begin` without `done` is finished or undone (`recover_record`):
- its output exists (so it is complete: rename is atomic) -> finish the moves, write `done`;
- no output -> the inputs are all still in the source folder: record `abort`, delete our temp
  file, and the next scan treats the pair as new (the output name is chosen again; it is free);
- a failure record -> rewrite its `.error.txt` if missing, finish the moves, write `done`.
A torn last line (killed mid-write) is ignored: nothing was done after an unfsynced record.
One watcher per target folder at a time (`WatchLock`: an flock on `<target>/.asn-clone.lock`).
The filesystem (`LocalFS`) is injectable: tests subclass it to inject faults.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiosubnet import audio as audiolib
from audiosubnet.errors import UsageError

log = logging.getLogger(__name__)

JOURNAL_NAME = ".asn-clone-journal.jsonl"
LOCK_NAME = ".asn-clone.lock"
ERROR_SUFFIX = ".error.txt"
COMPACT_AFTER_LINES = 2000


# ---- the filesystem ------------------------------------------------------------------------
@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    mtime_ns: int
    arrived: float  # max(mtime, ctime): when it last changed or was moved in

    @property
    def sig(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


class LocalFS:
    """The filesystem operations the watcher uses (tests subclass it to inject faults)."""

    def scan(self, folder: Path) -> list[FileInfo]:
        out = []
        try:
            with os.scandir(folder) as it:
                for e in it:
                    try:
                        if not e.is_file():  # regular files and links to them
                            continue
                        st = e.stat()
                    except OSError:
                        continue  # vanished between listing and stat
                    out.append(FileInfo(e.name, st.st_size, st.st_mtime_ns, max(st.st_mtime, st.st_ctime)))
        except FileNotFoundError:
            return []
        return out

    def stat_sig(self, path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def read_bytes(self, path: Path, limit: int | None = None) -> bytes:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def write_atomic(self, path: Path, data: bytes) -> None:
        audiolib.write_atomic(path, data)  # mode 0666 less the umask, as every output
        self.fsync_dir(path.parent)

    def move(self, src: Path, dst: Path) -> None:
        """Move without ever overwriting: link + unlink (EEXIST if dst exists); copy across devices."""
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.EEXIST:
                raise
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            self._copy_move(src, dst)
            return
        self.fsync_dir(dst.parent)
        os.unlink(src)
        self.fsync_dir(src.parent)

    def _copy_move(self, src: Path, dst: Path) -> None:
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst))
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.part")
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        shutil.copystat(src, tmp)
        if os.path.lexists(dst):  # lost a race: keep both, never overwrite
            os.unlink(tmp)
            raise FileExistsError(errno.EEXIST, "exists", str(dst))
        os.rename(tmp, dst)
        self.fsync_dir(dst.parent)
        os.unlink(src)
        self.fsync_dir(src.parent)

    def same_file(self, a: Path, b: Path) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False

    def unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def fsync_dir(self, folder: Path) -> None:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def list_names(self, folder: Path) -> list[str]:
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            return []


# ---- names ---------------------------------------------------------------------------------
def _numbered(name: str, n: int) -> str:
    """'a.wav' -> 'a-1.wav'; 'a.error.txt' -> 'a-1.error.txt'."""
    if name.endswith(ERROR_SUFFIX):
        return f"{name[: -len(ERROR_SUFFIX)]}-{n}{ERROR_SUFFIX}"
    p = Path(name)
    return f"{p.stem}-{n}{p.suffix}"


def free_names(folder: Path, names: list[str], fs: LocalFS, taken: set[str] | None = None) -> list[str]:
    """`names` as they are, or all with the same `-N` suffix on the stem, so none exists in folder."""
    taken = taken or set()
    n = 0
    while True:
        cand = names if n == 0 else [_numbered(x, n) for x in names]
        if not any(c in taken or fs.exists(folder / c) for c in cand):
            return cand
        n += 1


# ---- the journal ---------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines, each fsynced before the step it announces."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.lines = 0
        self._tail_checked = False

    def read(self) -> list[dict[str, Any]]:
        recs = []
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line: nothing was done after it
            if isinstance(rec, dict) and "id" in rec and "op" in rec:
                recs.append(rec)
        self.lines = len(recs)
        return recs

    def append(self, *records: dict[str, Any]) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
        with self._lock:
            if not self._tail_checked:  # a torn last line (killed mid-write) must not swallow ours
                self._tail_checked = True
                with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    if f.tell() > 0:
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            data = b"\n" + data
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.lines += len(records)

    def pending(self) -> list[dict[str, Any]]:
        """`begin` records with neither `done` nor `abort`, in order."""
        begun: dict[str, dict[str, Any]] = {}
        for rec in self.read():
            if rec["op"] == "begin":
                begun[rec["id"]] = rec
            elif rec["op"] in ("done", "abort"):
                begun.pop(rec["id"], None)
        return list(begun.values())

    def compact(self) -> None:
        """Replace the journal by its pending records (atomically)."""
        with self._lock:
            keep = self.pending()
            data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in keep)
            audiolib.write_atomic(self.path, data)
            self.lines = len(keep)


class WatchLock:
    """One watcher per target folder (flock; released by the OS even on kill -9)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise UsageError(f"another `asn clone watch` is already writing to {self.path.parent}",
                             hint="Stop it first, or use another --target folder.") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---- recovery ------------------------------------------------------------------------------
def recover_record(rec: dict[str, Any], journal: Journal, fs: LocalFS, *, source: Path, target: Path) -> None:
    """Finish or undo one `begin` record that has no `done` (a killed watcher's half-done pair)."""
    src = Path(rec.get("source_dir") or source)  # absolute: a restart may use other flags
    if rec.get("kind") == "fail":
        dst = Path(rec["dest_dir"])
        err = dst / rec["error_file"]
        if not fs.exists(err):
            fs.write_atomic(err, rec["error_text"].encode())
        finish_moves(fs, rec, src, dst)
        journal.append({"op": "done", "id": rec["id"]})
        log.info("recovered failed pair %s", rec["stem"])
        return
    out = target / rec["output"]
    if fs.exists(out):
        finish_moves(fs, rec, src, Path(rec["dest_dir"]))
        journal.append({"op": "done", "id": rec["id"]})
        log.info("recovered %s (output was written; inputs moved now)", rec["stem"])
    else:
        for name in fs.list_names(target):
            if name.startswith(f".{rec['output']}.") and name.endswith(".part"):
                fs.unlink(target / name)
        journal.append({"op": "abort", "id": rec["id"]})
        log.info("interrupted before its output: %s goes back to the queue", rec["stem"])


def finish_moves(fs: LocalFS, rec: dict[str, Any], src_dir: Path, dst_dir: Path) -> None:
    """Move a record's inputs to their journaled names; what a kill already moved is skipped."""
    for s_name, d_name in rec["moves"]:
        s, d = src_dir / s_name, dst_dir / d_name
        s_there, d_there = fs.exists(s), fs.exists(d)
        if s_there and d_there:
            if fs.same_file(s, d):
                fs.unlink(s)  # killed between link and unlink
            else:
                log.warning("%s and %s both exist and differ; leaving both", s, d)
        elif s_there:
            try:
                fs.move(s, d)
            except FileExistsError:  # someone else put a file there meanwhile: never overwrite
                alt = free_names(dst_dir, [d_name], fs)[0]
                log.warning("%s appeared meanwhile; moving %s to %s instead", d, s, alt)
                fs.move(s, dst_dir / alt)
