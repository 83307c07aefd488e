"""The embedded log's SQLite database: opening it, its schema, transactions, error translation.

One database file (WAL mode) holds every stream, group and offset, shared by all processes.
Writers take the lock with ``BEGIN IMMEDIATE`` and a busy timeout; ``synchronous=FULL``
(the default durability) makes every commit fsync the WAL, so an acknowledged record
survives an OS crash, while ``durability="process"`` (``synchronous=NORMAL``) survives only a
process crash and fsyncs at checkpoints.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from millstream.errors import (
    ConfigError,
    CorruptDataError,
    DeliveryError,
    MillstreamError,
    UnavailableError,
)

__all__ = ["SCHEMA_VERSION", "LocalOptions", "begin_immediate", "connect", "translate", "write_txn"]

SCHEMA_VERSION = 2  # 2: batches.segment (large payloads in segment files, see _segments)
Durability = Literal["full", "process"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    retention_ms INTEGER,
    retention_bytes INTEGER,
    compact INTEGER NOT NULL DEFAULT 0,
    tombstone_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    stream_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    clean_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    size INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    payload BLOB NOT NULL,
    segment INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_end ON batches (stream_id, partition, end_offset);
CREATE INDEX IF NOT EXISTS batches_by_segment ON batches (segment) WHERE segment IS NOT NULL;
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS group_members (
    group_name TEXT NOT NULL,
    member_id TEXT NOT NULL,
    client TEXT NOT NULL,
    streams TEXT NOT NULL,
    deadline_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, member_id)
);
CREATE TABLE IF NOT EXISTS group_owners (
    group_name TEXT NOT NULL,
    stream_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    next_member_id TEXT NOT NULL,
    PRIMARY KEY (group_name, stream_id, partition)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_name TEXT NOT NULL,
    stream_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, stream_id, partition)
);
"""


@dataclass(frozen=True, slots=True)
class LocalOptions:
    """Tuning of the embedded log; set from ``local:`` URL query options."""

    durability: Durability = "full"
    busy_timeout_ms: int = 30_000
    max_record_bytes: int = 1024 * 1024
    session_timeout_ms: int = 3_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    max_batch_bytes: int = 512 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    retention_check_ms: int = 10_000
    wal_limit_bytes: int = 64 * 1024 * 1024
    #: how an idle consumer learns of new records: "auto" (woken by the writers' doorbells
    #: where the OS offers file notifications, else polling) or "poll" (always polling)
    wakeup: Literal["auto", "poll"] = "auto"
    segment_bytes: int = 64 * 1024 * 1024


def translate(exc: sqlite3.Error, path: Path, doing: str) -> MillstreamError:
    """Turn an sqlite3 exception into the millstream error a caller can act on."""
    text = str(exc)
    lower = text.lower()
    if "malformed" in lower or "not a database" in lower or "corrupt" in lower:
        return CorruptDataError(
            f"the stream database {path} is damaged ({text}) while {doing}; stop every "
            "process using it, keep a copy, run `sqlite3 FILE 'PRAGMA integrity_check'` "
            "to see where, and restore from a backup"
        )
    if "locked" in lower or "busy" in lower:
        return UnavailableError(
            f"the stream database {path} stayed locked by another process beyond the busy "
            f"timeout while {doing}; retry, or raise busy_timeout_ms in the local: URL"
        )
    if "disk" in lower or "full" in lower or "i/o" in lower or "readonly" in lower:
        return DeliveryError(
            f"could not write the stream database {path} while {doing}: {text}; "
            "free disk space or fix permissions, then restart the producer"
        )
    if "unable to open" in lower:
        return ConfigError(
            f"cannot open the stream database {path} ({text}); check the directory exists "
            "and is writable, or set MILLSTREAM_HOME"
        )
    return UnavailableError(f"the stream database {path} failed while {doing}: {text}")


def connect(path: Path, options: LocalOptions) -> sqlite3.Connection:
    """Open the database (creating it and its schema if needed) with the log's pragmas; the
    caller owns the connection and closes it (a failure here closes it first)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory {path.parent} for the stream database ({exc}); "
            "choose a writable place with MILLSTREAM_HOME or a local:PATH URL"
        ) from exc
    try:
        conn = sqlite3.connect(
            path,
            timeout=options.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise translate(exc, path, "opening it") from exc
    try:  # the caller owns the connection only once it is returned: close it on any failure
        conn.execute(f"PRAGMA busy_timeout={options.busy_timeout_ms}")
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise ConfigError(
                f"the stream database {path} could not switch to WAL mode (got {mode!r}); "
                "put MILLSTREAM_HOME on a local file system"
            )
        sync = "FULL" if options.durability == "full" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute(f"PRAGMA journal_size_limit={options.wal_limit_bytes}")
        conn.execute("PRAGMA cache_size=-32768")
        _ensure_schema(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, path, "opening it") from exc
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    row = None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:
        pass  # a new database: no meta table yet
    if row is not None and int(row[0]) == 1:
        _upgrade_from_1(conn)
        return
    if row is not None:
        if int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"the stream database {path} has schema version {row[0]}, this millstream "
                f"reads version {SCHEMA_VERSION}; upgrade millstream or use another MILLSTREAM_HOME"
            )
        return
    with write_txn(conn):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )


def _upgrade_from_1(conn: sqlite3.Connection) -> None:
    """Version 1 to 2: add ``batches.segment`` (every existing row stays inline). Another
    process may upgrade at the same moment: the version is read again under the lock."""
    with write_txn(conn):
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if int(row[0]) != 1:
            return
        conn.execute("ALTER TABLE batches ADD COLUMN segment INTEGER")
        conn.execute("CREATE INDEX IF NOT EXISTS batches_by_segment ON batches (segment) "
                     "WHERE segment IS NOT NULL")
        conn.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))


def begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, retrying every ~1 ms up to the connection's busy timeout.

    SQLite's own busy handler backs off to 100 ms sleeps and keeps no queue, so a small
    transaction (a heartbeat, an offset commit) could wait seconds behind a busy producer.
    Here the handler is cut to a few milliseconds for the attempt and this loop retries
    finely. Only small transactions use this; bulk writers (producers, retention) keep
    SQLite's own handler, which also lets a writer restart the WAL from its beginning — with
    every writer polling like this, the -wal file was measured growing tenfold in the soak test.
    """
    timeout_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout=4")
    try:
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.0002
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.001)
    finally:
        conn.execute(f"PRAGMA busy_timeout={timeout_ms}")


@contextmanager
def write_txn(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` (see ``begin_immediate``), commit or undo."""
    begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction was already rolled back by SQLite after an I/O error
        raise
    conn.execute("COMMIT")
