"""SimChain: a simulated subnet in one SQLite file, so miners and validators on one machine form a working
subnet with no node (`--network sim`; `asn sim` creates and inspects it).

- WAL mode, a busy timeout and short transactions: several processes read and write the file at once.
- The block number follows the wall clock: `(now - genesis) / block_seconds` (12 s by default).
- Hotkeys register per netuid (validators with stake and a permit), publish ip:port, and set weights,
  which are recorded with their block; a hotkey may set weights once per `weights_rate_limit` blocks.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from audiosubnet.chain.base import Coldkey, Hotkey, Peer, RateLimitedError, Uid, WeightsResult
from audiosubnet.errors import ChainError, NotRegisteredError, UsageError

DEFAULT_BLOCK_SECONDS = 12.0
DEFAULT_TEMPO = 360
DEFAULT_WEIGHTS_RATE_LIMIT = 100
DEFAULT_MAX_UIDS = 256
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subnets (
    netuid INTEGER PRIMARY KEY, tempo INTEGER NOT NULL, weights_rate_limit INTEGER NOT NULL,
    max_uids INTEGER NOT NULL, created_block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, coldkey TEXT NOT NULL,
    stake REAL NOT NULL DEFAULT 0, validator_permit INTEGER NOT NULL DEFAULT 0,
    ip TEXT, port INTEGER, registered_block INTEGER NOT NULL, last_update INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE TABLE IF NOT EXISTS weights (
    id INTEGER PRIMARY KEY AUTOINCREMENT, netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL,
    block INTEGER NOT NULL, weights TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS weights_by_setter ON weights (netuid, uid, block);
"""


@dataclass(frozen=True)
class SimSubnet:
    netuid: int
    tempo: int
    weights_rate_limit: int
    max_uids: int


@dataclass(frozen=True)
class WeightsRow:
    netuid: int
    uid: int
    hotkey: str
    block: int
    weights: dict[int, float]


class SimChain:
    """`Chain` over a SQLite file. `hotkey` is the identity that publishes endpoints and sets weights."""

    def __init__(self, path: str | Path, hotkey: str | None = None, *, create: bool = False,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path).expanduser()
        self.network = "sim"
        self.hotkey = hotkey
        self._clock = clock
        self._local = threading.local()
        if not self.path.is_file():
            if not create:
                raise UsageError(f"no simulated chain at {self.path}",
                                 hint="Create one with `asn sim init` (or set subnet.sim_path / ASN_SUBNET__SIM_PATH).")
            self.init()
        self._block_seconds: float | None = None
        self._genesis: float | None = None

    def __repr__(self) -> str:
        return f"SimChain({str(self.path)!r})"

    # ---- SQLite plumbing -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as e:
            raise ChainError(f"the simulated chain {self.path} is busy or unreadable: {e}",
                             hint="Another process holds it locked for too long; retry.") from e
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def init(self, *, block_seconds: float = DEFAULT_BLOCK_SECONDS, reset: bool = False) -> None:
        """Create the file (or, with `reset`, empty it and start a new genesis)."""
        if block_seconds <= 0:
            raise UsageError("block seconds must be positive")
        conn = self._conn()
        conn.executescript(_SCHEMA)
        with self._tx(write=True) as c:
            if reset:
                for table in ("meta", "subnets", "neurons", "weights"):
                    c.execute(f"DELETE FROM {table}")
            c.execute("INSERT OR IGNORE INTO meta VALUES ('genesis', ?)", (repr(self._clock()),))
            c.execute("INSERT OR IGNORE INTO meta VALUES ('block_seconds', ?)", (repr(float(block_seconds)),))
            c.execute("INSERT OR IGNORE INTO meta VALUES ('version', '1')")
        self._block_seconds = self._genesis = None

    def _meta(self) -> tuple[float, float]:
        if self._genesis is None or self._block_seconds is None:
            try:
                rows = dict(self._conn().execute("SELECT key, value FROM meta").fetchall())
                self._genesis, self._block_seconds = float(rows["genesis"]), float(rows["block_seconds"])
            except (sqlite3.Error, KeyError, ValueError) as e:
                raise ChainError(f"{self.path} is not a simulated chain ({e})",
                                 hint="Recreate it with `asn sim init --reset`.") from e
        return self._genesis, self._block_seconds

    # ---- Chain: reads --------------------------------------------------------------------------------
    def block(self) -> int:
        genesis, secs = self._meta()
        return max(0, int((self._clock() - genesis) // secs))

    def block_time(self) -> float:
        return self._meta()[1]

    def subnet(self, netuid: int) -> SimSubnet | None:
        row = self._conn().execute("SELECT netuid, tempo, weights_rate_limit, max_uids FROM subnets WHERE netuid=?",
                                   (netuid,)).fetchone()
        return SimSubnet(*row) if row else None

    def _need_subnet(self, netuid: int) -> SimSubnet:
        sn = self.subnet(netuid)
        if sn is None:
            raise ChainError(f"subnet {netuid} does not exist on the simulated chain {self.path}",
                             hint=f"Create it with `asn sim init --netuid {netuid}` or register a hotkey on it.")
        return sn

    def peers(self, netuid: int) -> list[Peer]:
        self._need_subnet(netuid)
        rows = self._conn().execute(
            "SELECT uid, hotkey, coldkey, ip, port, validator_permit, stake, last_update FROM neurons "
            "WHERE netuid=? ORDER BY uid", (netuid,)).fetchall()
        return [Peer(uid=Uid(uid), hotkey=Hotkey(hk), coldkey=Coldkey(ck), endpoint=_endpoint(ip, port),
                     validator_permit=bool(permit), stake=float(stake), last_update=int(last))
                for uid, hk, ck, ip, port, permit, stake, last in rows]

    def uid_of(self, netuid: int, hotkey: str) -> Uid | None:
        row = self._conn().execute("SELECT uid FROM neurons WHERE netuid=? AND hotkey=?", (netuid, hotkey)).fetchone()
        return Uid(row[0]) if row else None

    def weights_rate_limit(self, netuid: int) -> int:
        return self._need_subnet(netuid).weights_rate_limit

    def tempo(self, netuid: int) -> int:
        return self._need_subnet(netuid).tempo

    def last_update(self, netuid: int, uid: int) -> int:
        row = self._conn().execute("SELECT last_update FROM neurons WHERE netuid=? AND uid=?", (netuid, uid)).fetchone()
        return int(row[0]) if row else 0

    def weights(self, netuid: int, *, latest: bool = True) -> list[WeightsRow]:
        """Weight settings on `netuid` (the latest per setter by default), newest block first."""
        sql = "SELECT netuid, uid, hotkey, block, weights FROM weights WHERE netuid=?"
        if latest:
            sql += " AND id IN (SELECT MAX(id) FROM weights WHERE netuid=? GROUP BY uid)"
            args: tuple[int, ...] = (netuid, netuid)
        else:
            args = (netuid,)
        rows = self._conn().execute(sql + " ORDER BY block DESC, uid", args).fetchall()
        return [WeightsRow(n, u, hk, b, {int(k): float(v) for k, v in json.loads(w).items()})
                for n, u, hk, b, w in rows]

    # ---- Chain: writes -------------------------------------------------------------------------------
    def _own_uid(self, c: sqlite3.Connection, netuid: int, what: str) -> int:
        if not self.hotkey:
            raise ChainError(f"{what}: this simulated chain connection has no hotkey")
        row = c.execute("SELECT uid FROM neurons WHERE netuid=? AND hotkey=?", (netuid, self.hotkey)).fetchone()
        if row is None:
            raise NotRegisteredError(f"{what}: hotkey {self.hotkey} is not registered on netuid {netuid} "
                                     f"of the simulated chain",
                                     hint=f"Register it with `asn sim register --netuid {netuid} --hotkey-ss58 "
                                          f"{self.hotkey}` (or --wallet.name/--wallet.hotkey).")
        return int(row[0])

    def publish_endpoint(self, netuid: int, ip: str, port: int) -> None:
        if not (0 < int(port) < 65536):
            raise ChainError(f"port {port} is out of range")
        with self._tx(write=True) as c:
            uid = self._own_uid(c, netuid, "publishing the endpoint")
            c.execute("UPDATE neurons SET ip=?, port=? WHERE netuid=? AND uid=?", (ip, int(port), netuid, uid))

    def set_weights(self, netuid: int, weights: Mapping[int, float], *, version_key: int = 0) -> WeightsResult:
        clean = {int(u): float(w) for u, w in weights.items()}
        if any(not (w >= 0) or w == float("inf") for w in clean.values()):
            raise ChainError("weights must be finite and non-negative")
        total = sum(clean.values())
        if total <= 0:
            raise ChainError("all weights are zero; nothing to set")
        block = self.block()
        with self._tx(write=True) as c:
            sn = self._need_subnet(netuid)
            uid = self._own_uid(c, netuid, "setting weights")
            valid = {int(r[0]) for r in c.execute("SELECT uid FROM neurons WHERE netuid=?", (netuid,))}
            unknown = sorted(set(clean) - valid)
            if unknown:
                raise ChainError(f"uids {unknown[:5]} are not registered on netuid {netuid}")
            last = int(c.execute("SELECT last_update FROM neurons WHERE netuid=? AND uid=?",
                                 (netuid, uid)).fetchone()[0])
            if last and sn.weights_rate_limit and block - last < sn.weights_rate_limit:
                wait = sn.weights_rate_limit - (block - last)
                raise RateLimitedError(
                    f"weights on netuid {netuid} were set {block - last} blocks ago; the rate limit is "
                    f"{sn.weights_rate_limit} blocks (retry in {wait} blocks)",
                    hint="Wait for the rate-limit window to pass.", retry_in_blocks=wait)
            norm = {u: w / total for u, w in sorted(clean.items()) if w > 0}
            c.execute("INSERT INTO weights (netuid, uid, hotkey, block, weights) VALUES (?, ?, ?, ?, ?)",
                      (netuid, uid, self.hotkey, block, json.dumps(norm)))
            c.execute("UPDATE neurons SET last_update=? WHERE netuid=? AND uid=?", (block, netuid, uid))
        return WeightsResult(block=block, uids=tuple(norm), weights=tuple(norm.values()), commit_reveal=False,
                             message="weights recorded")

    # ---- simulator administration (asn sim) ----------------------------------------------------------
    def create_subnet(self, netuid: int, *, tempo: int = DEFAULT_TEMPO,
                      weights_rate_limit: int = DEFAULT_WEIGHTS_RATE_LIMIT, max_uids: int = DEFAULT_MAX_UIDS,
                      update: bool = False) -> SimSubnet:
        block = self.block()
        with self._tx(write=True) as c:
            if update:
                c.execute("INSERT INTO subnets VALUES (?, ?, ?, ?, ?) ON CONFLICT(netuid) DO UPDATE SET "
                          "tempo=excluded.tempo, weights_rate_limit=excluded.weights_rate_limit, "
                          "max_uids=excluded.max_uids", (netuid, tempo, weights_rate_limit, max_uids, block))
            else:
                c.execute("INSERT OR IGNORE INTO subnets VALUES (?, ?, ?, ?, ?)",
                          (netuid, tempo, weights_rate_limit, max_uids, block))
        sn = self.subnet(netuid)
        assert sn is not None
        return sn

    def register(self, netuid: int, hotkey: str, coldkey: str | None = None, *, stake: float = 0.0,
                 validator_permit: bool = False) -> Uid:
        """Register `hotkey` (idempotent: an existing registration gets the new stake and permit)."""
        if stake < 0:
            raise UsageError("stake must be >= 0")
        if self.subnet(netuid) is None:
            self.create_subnet(netuid)
        block = self.block()
        with self._tx(write=True) as c:
            row = c.execute("SELECT uid FROM neurons WHERE netuid=? AND hotkey=?", (netuid, hotkey)).fetchone()
            if row is not None:
                c.execute("UPDATE neurons SET stake=?, validator_permit=?, coldkey=COALESCE(?, coldkey) "
                          "WHERE netuid=? AND uid=?", (stake, int(validator_permit), coldkey, netuid, row[0]))
                return Uid(int(row[0]))
            max_uids = int(c.execute("SELECT max_uids FROM subnets WHERE netuid=?", (netuid,)).fetchone()[0])
            used = {int(r[0]) for r in c.execute("SELECT uid FROM neurons WHERE netuid=?", (netuid,))}
            free = next((u for u in range(max_uids) if u not in used), None)
            if free is None:
                raise ChainError(f"netuid {netuid} of the simulated chain is full ({max_uids} uids)",
                                 hint="Deregister a hotkey with `asn sim deregister`.")
            c.execute("INSERT INTO neurons (netuid, uid, hotkey, coldkey, stake, validator_permit, registered_block) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (netuid, free, hotkey, coldkey or hotkey, stake, int(validator_permit), block))
            return Uid(free)

    def deregister(self, netuid: int, hotkey: str) -> bool:
        with self._tx(write=True) as c:
            cur = c.execute("DELETE FROM neurons WHERE netuid=? AND hotkey=?", (netuid, hotkey))
            return cur.rowcount > 0

    def netuids(self) -> list[int]:
        return [int(r[0]) for r in self._conn().execute("SELECT netuid FROM subnets ORDER BY netuid")]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _endpoint(ip: str | None, port: int | None) -> str | None:
    if not ip or not port:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
