"""Where a batch job's outputs go: a folder (local or shared by every node) or an fsspec URL (`s3://…`).

Each file is written whole or not at all: in a folder through a temp file + rename
(`audio.write_atomic`), in an object store through one PUT (an object appears complete or not
at all). That, with one writer of the manifest, is what makes a resumed job render every row once.
The store keeps only its URL, so it pickles cheaply to Ray workers; the filesystem opens on first use.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from audiosubnet import audio as audiolib
from audiosubnet.errors import UsageError


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


class OutputStore:
    def __init__(self, location: str | os.PathLike[str]):
        location = str(location)
        if location.startswith("file://"):
            location = location[len("file://"):]
        self.location = location.rstrip("/") or "/"
        self._fs: Any = None  # an fsspec filesystem (fsspec ships no type information)
        self._root = ""

    def __repr__(self) -> str:
        return f"OutputStore({self.location!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "_fs": None, "_root": ""}

    @property
    def remote(self) -> bool:
        return is_url(self.location)

    def _open(self) -> Any:
        if self._fs is None:
            try:
                import fsspec
                self._fs, self._root = fsspec.core.url_to_fs(self.location)
            except ImportError as e:  # fsspec itself, or its backend (s3fs, gcsfs, adlfs…)
                raise UsageError(f"cannot open {self.location}: {e}",
                                 hint="Install the fsspec backend for that URL, e.g. `pip install s3fs`.") from e
            except ValueError as e:  # unknown protocol
                raise UsageError(f"cannot open {self.location}: {e}") from e
        return self._fs

    def path(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _key(self, name: str) -> str:
        self._open()
        return f"{self._root.rstrip('/')}/{name}"

    def check_writable(self) -> None:
        if not self.remote:
            from audiosubnet.jobs.batch import check_writable
            check_writable(Path(self.location))
            return
        fs = self._open()
        probe = self._key(f".asn-write-test.{uuid.uuid4().hex}")
        try:
            with contextlib.suppress(FileExistsError, NotImplementedError):
                fs.makedirs(self._key("").rstrip("/"), exist_ok=True)
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except Exception as e:  # backends raise their own error types (PermissionError, ClientError…)
            raise UsageError(f"cannot write to {self.location}: {e}",
                             hint="Check the URL and the credentials (for s3: AWS_* variables or ~/.aws).") from e

    def write(self, name: str, data: bytes) -> None:
        if not self.remote:
            audiolib.write_atomic(Path(self.location) / name, data)
            return
        try:
            self._open().pipe_file(self._key(name), data)
        except OSError:
            raise
        except Exception as e:  # a backend's own error becomes an OSError: the row fails, the job goes on
            raise OSError(str(e)) from e

    def size(self, name: str) -> int | None:
        """Bytes of a stored file; None when it is missing or unreadable."""
        if not self.remote:
            f = Path(self.location) / name
            try:
                return f.stat().st_size if f.is_file() else None
            except OSError:
                return None
        try:
            info = self._open().info(self._key(name))
        except (FileNotFoundError, OSError):
            return None
        if info.get("type") == "directory":
            return None
        return int(info.get("size") or 0)

    def read(self, name: str) -> bytes | None:
        if not self.remote:
            try:
                return (Path(self.location) / name).read_bytes()
            except OSError:
                return None
        try:
            data: bytes = self._open().cat_file(self._key(name))
            return data
        except (FileNotFoundError, OSError):
            return None
