"""The SQLite location store: `storage: sqlite:PATH`, the embedded default.

One connection on one database thread (`twisted.enterprise.adbapi` with
``cp_min=cp_max=1``), so the reactor never waits on the disk and writes are applied
in the order they were made. Writes are queued and coalesced: while one batch is
being committed, the next one gathers, and a binding saved twice before its batch
goes out is written once. Under a registration storm this turns thousands of
commits into a few dozen.

Call detail records (`phpvoip.cdr`) go through the same pool with `write_cdr`, so
there is one writer to the file and a CDR batch never interleaves with a bindings
batch. The ``cdr`` table is created with ``IF NOT EXISTS`` like every table here, so
a database from a version without call records gets it at the next start.

The database is in WAL mode with ``synchronous=NORMAL``: a commit survives a crash
of the switch; after a power cut the last commits may be lost (phones register
again within their refresh interval anyway).
"""

from __future__ import annotations

import copy
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.interfaces import ILocationStore
from phpvoip.store import Binding, UserRecord, format_source, parse_source

__all__ = ["CDR_COLUMNS", "CDR_MEDIA_COLUMNS", "SCHEMA", "SqliteStore", "prepare"]

log = Logger()

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bindings (
        aor TEXT NOT NULL,
        contact_key TEXT NOT NULL,
        contact TEXT NOT NULL,
        expires_at REAL NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        q REAL,
        source TEXT,
        registered_at REAL NOT NULL,
        user_agent TEXT,
        PRIMARY KEY (aor, contact_key)
    )""",
    "CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (expires_at)",
    """CREATE TABLE IF NOT EXISTS users (
        username TEXT PRIMARY KEY,
        ha1_md5 TEXT,
        ha1_sha256 TEXT
    )""",
    "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    # One row per call attempt (phpvoip.cdr). Times are epoch seconds (UTC), durations
    # seconds: `duration` from the INVITE to the end, `billsec` from the answer to
    # the end. The rtp_* columns stay NULL until the switch relays media.
    """CREATE TABLE IF NOT EXISTS cdr (
        id TEXT PRIMARY KEY,
        call_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        routed_from TEXT,
        routed_to TEXT,
        inbound_module TEXT,
        outbound_module TEXT,
        source TEXT,
        start_time REAL NOT NULL,
        ring_time REAL,
        answer_time REAL,
        end_time REAL NOT NULL,
        duration REAL NOT NULL,
        billsec REAL NOT NULL,
        disposition TEXT NOT NULL,
        status INTEGER,
        cause TEXT,
        q850 INTEGER,
        reason TEXT,
        hangup_by TEXT,
        transfers TEXT,
        rtp_packets_caller INTEGER,
        rtp_packets_callee INTEGER,
        rtp_lost_caller INTEGER,
        rtp_lost_callee INTEGER,
        rtp_jitter_ms_caller REAL,
        rtp_jitter_ms_callee REAL
    )""",
    # Billing reads by time range, support looks a call up by number or Call-ID.
    "CREATE INDEX IF NOT EXISTS cdr_start ON cdr (start_time)",
    "CREATE INDEX IF NOT EXISTS cdr_caller ON cdr (caller, start_time)",
    "CREATE INDEX IF NOT EXISTS cdr_callee ON cdr (callee, start_time)",
    "CREATE INDEX IF NOT EXISTS cdr_call_id ON cdr (call_id)",
)

# What `phpvoip.cdr` writes, in the order of its row tuples.
CDR_COLUMNS = (
    "id", "call_id", "caller", "callee", "routed_from", "routed_to", "inbound_module", "outbound_module",
    "source", "start_time", "ring_time", "answer_time", "end_time", "duration", "billsec", "disposition",
    "status", "cause", "q850", "reason", "hangup_by", "transfers",
)
# Packets received from each party, lost and jitter: filled in once media is relayed.
CDR_MEDIA_COLUMNS = (
    "rtp_packets_caller", "rtp_packets_callee", "rtp_lost_caller", "rtp_lost_callee",
    "rtp_jitter_ms_caller", "rtp_jitter_ms_callee",
)
# OR IGNORE: a batch retried after a commit whose success was not reported is not
# written twice (the id is unique).
_CDR_ALL = CDR_COLUMNS + CDR_MEDIA_COLUMNS
_INSERT_CDR = (
    f"INSERT OR IGNORE INTO cdr ({', '.join(_CDR_ALL)}) VALUES ({', '.join('?' * len(_CDR_ALL))})"
)

_UPSERT = (
    "INSERT OR REPLACE INTO bindings (aor, contact_key, contact, expires_at, call_id, cseq, q, source,"
    " registered_at, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM bindings WHERE aor = ? AND contact_key = ?"
_SELECT = (
    "SELECT aor, contact_key, contact, expires_at, call_id, cseq, q, source, registered_at, user_agent"
    " FROM bindings WHERE expires_at > ?"
)


def prepare(connection: sqlite3.Connection) -> None:
    """Set the journal mode and create the tables (idempotent); run once per
    connection, on the connection's own thread."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        connection.execute(statement)
    connection.commit()


def _row(binding: Binding) -> tuple[Any, ...]:
    return (
        binding.aor,
        binding.key,
        binding.contact,
        binding.expires_at,
        binding.call_id,
        binding.cseq,
        binding.q,
        format_source(binding.source),
        binding.registered_at,
        binding.user_agent,
    )


def _binding(row: tuple[Any, ...]) -> Binding:
    aor, key, contact, expires_at, call_id, cseq, q, source, registered_at, user_agent = row
    return Binding(
        aor=aor,
        key=key,
        contact=contact,
        expires_at=float(expires_at),
        call_id=call_id,
        cseq=int(cseq),
        q=None if q is None else float(q),
        source=parse_source(source),
        registered_at=float(registered_at),
        user_agent=user_agent,
    )


def _write_batch(cursor: Any, batch: list[tuple[tuple[str, str], Binding | None]]) -> int:
    upserts = [_row(b) for _, b in batch if b is not None]
    deletes = [key for key, b in batch if b is None]
    if upserts:
        cursor.executemany(_UPSERT, upserts)
    if deletes:
        cursor.executemany(_DELETE, deletes)
    return len(batch)


def _insert_cdr(cursor: Any, rows: list[tuple[Any, ...]]) -> int:
    cursor.executemany(_INSERT_CDR, rows)
    return len(rows)


def _load(cursor: Any, now: float) -> list[Binding]:
    cursor.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
    cursor.execute(_SELECT, (now,))
    return [_binding(row) for row in cursor.fetchall()]


def _secret(cursor: Any, name: str, fresh: bytes) -> bytes:
    cursor.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, fresh))
    cursor.execute("SELECT value FROM secrets WHERE name = ?", (name,))
    return bytes(cursor.fetchone()[0])


@implementer(ILocationStore)
class SqliteStore:
    """Bindings, users and secrets in one SQLite file (created with its directory
    when missing)."""

    def __init__(self, path: str | Path, reactor: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pool = adbapi.ConnectionPool(
            "sqlite3",
            str(self.path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=prepare,
            cp_reactor=reactor,
        )
        # (aor, key) -> binding to write, or None to delete; insertion order kept
        self._pending: dict[tuple[str, str], Binding | None] = {}
        self._waiters: list[defer.Deferred] = []
        self._busy = False
        self.closed = False
        self.batches = 0  # how many commits so far (for tests and metrics)

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path} pending={len(self._pending)}>"

    # -- bindings ------------------------------------------------------------------

    def load(self, now: float) -> defer.Deferred:
        return self.flush().addCallback(lambda _: self.pool.runInteraction(_load, now))

    def save(self, binding: Binding) -> defer.Deferred:
        # A copy, so later changes to the caller's object do not leak into the batch.
        return self._queue((binding.aor, binding.key), copy.copy(binding))

    def delete(self, aor: str, key: str) -> defer.Deferred:
        return self._queue((aor, key), None)

    def flush(self) -> defer.Deferred:
        if not self._pending and not self._busy:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        self._kick()
        return d

    def close(self) -> defer.Deferred:
        if self.closed:
            return defer.succeed(None)
        d = self.flush()

        def shut(result: Any) -> Any:
            self.closed = True
            self.pool.close()
            return result

        return d.addBoth(shut)

    def _queue(self, key: tuple[str, str], value: Binding | None) -> defer.Deferred:
        if self.closed:
            return defer.fail(RuntimeError("the store is closed"))
        pending = self._pending
        pending.pop(key, None)  # re-insert: the write keeps its place in time order
        pending[key] = value
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        self._kick()
        return d

    def _kick(self) -> None:
        if self._busy or (not self._pending and not self._waiters):
            return
        batch = list(self._pending.items())
        waiters = self._waiters
        self._pending = {}
        self._waiters = []
        self._busy = True
        d = self.pool.runInteraction(_write_batch, batch) if batch else defer.succeed(0)
        d.addBoth(self._written, waiters, len(batch))

    def _written(self, result: Any, waiters: list[defer.Deferred], size: int) -> None:
        self._busy = False
        failed = isinstance(result, Failure)
        if failed:
            log.failure(
                "could not write {count} binding(s) to {path}", result, count=size, path=str(self.path)
            )
        elif size:
            self.batches += 1
        for waiter in waiters:
            if failed:
                waiter.errback(result)
            else:
                waiter.callback(None)
        self._kick()

    # -- call detail records -----------------------------------------------------------

    def write_cdr(self, rows: list[tuple[Any, ...]]) -> defer.Deferred:
        """Insert call records (tuples in `CDR_COLUMNS` then `CDR_MEDIA_COLUMNS` order) in one transaction on
        the store's database thread; fires with the count, or fails (nothing of the
        batch written) so that the caller can keep the rows and try again."""
        if self.closed:
            return defer.fail(RuntimeError("the store is closed"))
        return self.pool.runInteraction(_insert_cdr, rows)

    # -- secrets and users -------------------------------------------------------------

    def secret(self, name: str) -> defer.Deferred:
        return self.pool.runInteraction(_secret, name, secrets.token_bytes(32))

    def load_users(self) -> defer.Deferred:
        def read(cursor: Any) -> list[UserRecord]:
            cursor.execute("SELECT username, ha1_md5, ha1_sha256 FROM users")
            return [UserRecord(*row) for row in cursor.fetchall()]

        return self.pool.runInteraction(read)

    def save_user(self, user: UserRecord) -> defer.Deferred:
        return self.pool.runOperation(
            "INSERT OR REPLACE INTO users (username, ha1_md5, ha1_sha256) VALUES (?, ?, ?)",
            (user.username, user.ha1_md5, user.ha1_sha256),
        )

    def delete_user(self, username: str) -> defer.Deferred:
        return self.pool.runOperation("DELETE FROM users WHERE username = ?", (username,))
