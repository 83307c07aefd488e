"""Segment files: where the embedded log keeps the payloads of large batches, written once.

A batch row in SQLite's WAL mode is written twice (to the WAL, then copied into the database
by a checkpoint) through pages of 4 KB. For a batch of large values (raw-values layout, at
least ``EXTERNAL_FROM`` bytes) the producer instead appends the payload to a segment file
beside the database (``streams.db-segment-NNNNNNNNNN``), fsyncs it, and then commits a row
whose ``segment`` column names the file and whose ``payload`` is the place in it (offset and
length). The row's CRC still covers the payload itself and the row's placement, and is checked
on every read.

Rules that keep this as safe as an inline row:

* Appending happens inside the writer's ``BEGIN IMMEDIATE`` transaction, and the file is
  fsynced (with its directory while no committed row refers to the file yet, whoever
  created it) before the row commits: a committed row only
  ever points at synced bytes. A crash between the append and the commit leaves bytes nobody
  refers to; the next append goes after them.
* The file appended to is the *current* one (its number is in the ``meta`` table); once it
  holds the ``segment_bytes`` option (64 MiB) the next append starts the next number.
  ``collect`` (run with the write lock held, after retention, compaction and stream deletion)
  deletes every other file no row refers to, so a file is never deleted while a writer could
  still refer to it.
* A reader whose snapshot still shows a row that retention has since deleted, or compaction
  rewritten in place, may find its file gone: it checks the row again in a fresh snapshot and
  reads it again if it is gone or points elsewhere, and reports damage (``CorruptDataError``
  naming the file) only if it still points at the missing bytes.
* The deletions that free a file are made durable before the file is deleted (``collect``
  fsyncs the WAL): with ``durability="process"`` commits are not fsynced, and a power loss
  must not bring back rows whose files are gone.
* Every path is taken from the connection (``database_of``: SQLite opens a symlinked
  database at its target), so writers, readers and ``collect`` look in one directory.
* ``durability="process"`` keeps every payload inline: its commits are not fsynced, so a
  power loss must not find a durable row pointing at bytes that never reached the disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from pathlib import Path

from millstream.errors import CorruptDataError, DeliveryError
from millstream.faults import fault_point

log = logging.getLogger(__name__)

__all__ = ["EXTERNAL_FROM", "collect", "database_of", "external", "missing",
           "read", "write"]

#: payloads in the raw-values layout at least this big go to a segment file
EXTERNAL_FROM = 64 * 1024
_REF = struct.Struct("<QQ")  # offset, length
_IOV = 512  # buffers per pwritev call (IOV_MAX is 1024 on Linux)


def external(parts: list[bytes]) -> bool:
    """Whether the payload made of ``parts`` goes to a segment file (large, and in the
    raw-values layout)."""
    return parts[0][:1] == b"\x02" and sum(map(len, parts)) >= EXTERNAL_FROM


def _name(db: Path, number: int) -> Path:
    return db.with_name(f"{db.name}-segment-{number:010d}")


def _numbers(db: Path) -> list[int]:
    prefix = f"{db.name}-segment-"
    try:
        names = os.listdir(db.parent)
    except FileNotFoundError:
        return []
    return sorted(int(n[len(prefix):]) for n in names
                  if n.startswith(prefix) and n[len(prefix):].isdecimal())


def _current(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key='segment'").fetchone()
    return int(row[0]) if row else 1


def write(conn: sqlite3.Connection, payloads: list[list[bytes]],
          limit: int) -> tuple[int, list[bytes]]:
    """Append ``payloads`` (each given as its pieces) to the current segment file (or the
    next, once the current holds ``limit`` bytes) and fsync it; return the file's number and
    each payload's reference (the ``payload`` column of its row). Call inside the write
    transaction that inserts the rows."""
    db = database_of(conn)
    number = _current(conn)
    path = _name(db, number)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        size = -1
    if size >= limit:
        number += 1
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('segment', ?)",
                     (str(number),))
        path = _name(db, number)
        size = os.stat(path).st_size if path.exists() else -1
    # The directory entry is synced by whoever first commits a row into the file, not only by
    # whoever created it: a writer that died after creating it (before its own directory
    # sync) leaves a file the next writer appends to as if it were known.
    unknown = size < 0 or conn.execute(
        "SELECT 1 FROM batches WHERE segment=? LIMIT 1", (number,)).fetchone() is None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            offset = os.fstat(fd).st_size  # after any bytes a crashed writer left
            refs = []
            at = offset
            for parts in payloads:
                length = sum(map(len, parts))
                refs.append(_REF.pack(at, length))
                at += length
            _pwrite_all(fd, [part for parts in payloads for part in parts], offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        if unknown:  # a new file: make its directory entry durable too
            fault_point("log.append.before_directory_sync")
            dfd = os.open(db.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        raise DeliveryError(
            f"could not write the segment file {path} ({exc}); nothing was acknowledged — "
            "free disk space or fix permissions, then restart the producer"
        ) from exc
    fault_point("log.append.after_segment_write")
    return number, refs


def _pwrite_all(fd: int, payloads: list[bytes], offset: int) -> None:
    for i in range(0, len(payloads), _IOV):
        views = [memoryview(p) for p in payloads[i:i + _IOV]]
        while views:
            n = os.pwritev(fd, views, offset)
            if n <= 0:
                raise OSError(f"pwritev wrote nothing at byte {offset}")
            offset += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]


def database_of(conn: sqlite3.Connection) -> Path:
    """The database file of ``conn`` (segment files sit beside it)."""
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


def read(db: Path, number: int, ref: bytes, where: str, base: int, count: int) -> bytes | None:
    """The payload a row refers to, or None if its file is missing or too short (the caller
    decides between retention and damage). A reference that cannot be one is damage."""
    try:
        offset, length = _REF.unpack(ref)
    except struct.error as exc:
        raise CorruptDataError(
            f"{where}: batch at offsets {base}..{base + count - 1} has a damaged segment "
            f"reference ({len(ref)} bytes); the database file is damaged"
        ) from exc
    try:
        fd = os.open(_name(db, number), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if offset + length > os.fstat(fd).st_size:
            return None
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    return data if len(data) == length else None


def _sync_wal(db: Path) -> None:
    """Fsync the WAL, so every commit so far is durable: under ``durability="process"`` the
    commit that deleted a file's rows was not, and a power loss would bring the rows back
    without their file. (What a checkpoint moved out of the WAL was synced by it.)"""
    try:
        fd = os.open(db.with_name(db.name + "-wal"), os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL: every commit is in the database file, synced by its checkpoint
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def missing(db: Path, number: int, ref: bytes, where: str, base: int,
            count: int) -> CorruptDataError:
    """The error for a row whose segment bytes are gone while the row is still there."""
    offset, length = _REF.unpack(ref)
    return CorruptDataError(
        f"{where}: batch at offsets {base}..{base + count - 1} is stored in "
        f"{_name(db, number)} at bytes {offset}..{offset + length - 1}, and that file is "
        "missing or shorter; the log's files are damaged — stop its writers, keep a copy and "
        "restore from a backup"
    )


def collect(conn: sqlite3.Connection) -> int:
    """Delete the segment files no row refers to, except the current one; return how many.
    Takes the write lock, so no writer is between its append and its commit, and makes the
    deletions that freed the files durable first."""
    db = database_of(conn)
    numbers = _numbers(db)
    if not numbers or numbers == [_current(conn)]:  # a rollover meanwhile only delays this
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _current(conn)
        used = {row[0] for row in conn.execute(
            "SELECT DISTINCT segment FROM batches WHERE segment IS NOT NULL")}
        doomed = [n for n in numbers if n != current and n not in used]
        if doomed:
            _sync_wal(db)
            fault_point("log.segments.before_delete")
        for n in doomed:
            try:
                _name(db, n).unlink(missing_ok=True)
            except OSError as exc:  # space not returned yet; nothing refers to the file
                log.warning("could not delete the unused segment file %s: %s",
                            _name(db, n), exc)
    finally:
        conn.execute("ROLLBACK")  # nothing was written; the lock is released
    return len(doomed)
