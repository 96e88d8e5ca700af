"""Replay protection shared by every process of a miner: a SQLite nonce store (btauth/1 `NonceStore`).

`check_and_store(hotkey, nonce)` is one `INSERT OR IGNORE` on a WAL database: True the first time a
(hotkey, nonce) pair is seen, False for a replay, in any process that opens the same file. Entries expire after
`retention` seconds (>= the verifier's freshness window; anything older is rejected as stale anyway).

The miner calls it from a worker thread (never on the event loop). SQLite waits at most `busy_timeout_s` for
another process's write lock; a store still busy after that raises `NonceStoreBusy` (the request is answered
503 with Retry-After: never accepted unchecked, never a 500).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

from audiosubnet.errors import Unavailable, UsageError

DEFAULT_RETENTION_S = 60.0
_PURGE_EVERY = 1024  # inserts between expiry sweeps
BUSY_TIMEOUT_S = 0.5


class NonceStoreBusy(Unavailable):
    """The replay store could not be written in time (another process holds its lock)."""


class SqliteNonceStore:
    def __init__(self, path: str | Path, retention: float = DEFAULT_RETENTION_S,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path).expanduser()
        self.retention = float(retention)
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._inserts = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("CREATE TABLE IF NOT EXISTS nonces (hotkey TEXT NOT NULL, nonce INTEGER NOT NULL, "
                         "expires REAL NOT NULL, PRIMARY KEY (hotkey, nonce)) WITHOUT ROWID")
            conn.execute("CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires)")
        except (OSError, sqlite3.Error) as e:
            raise UsageError(f"cannot open the nonce store {self.path}: {e}",
                             hint="Check that ASN_HOME is writable.") from e

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # losing the last nonces in an OS crash is harmless
            conn.execute("PRAGMA cache_size=-256")  # KiB; one connection per thread: 2 MiB each by default
            self._local.conn = conn
        return conn

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        now = time.time()
        conn = self._conn()
        # nonces are < 2**63 for centuries; anything bigger was rejected as "in the future" already
        try:
            cur = conn.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)",
                               (hotkey_ss58, int(nonce_ns) & 0x7FFF_FFFF_FFFF_FFFF, now + self.retention))
        except sqlite3.OperationalError as e:  # "database is locked" after busy_timeout
            raise NonceStoreBusy(f"the replay store is busy ({e}); retry shortly") from None
        fresh = cur.rowcount == 1
        with self._lock:
            self._inserts += 1
            sweep = self._inserts % _PURGE_EVERY == 0
        if sweep:
            with contextlib.suppress(sqlite3.OperationalError):  # the next sweep catches up
                self.purge(now)
        return fresh

    def purge(self, now: float | None = None) -> int:
        cur = self._conn().execute("DELETE FROM nonces WHERE expires < ?", (time.time() if now is None else now,))
        return cur.rowcount

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
