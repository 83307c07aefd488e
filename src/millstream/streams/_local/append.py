"""Writing one batch row and advancing its partition: shared by the producer (group commit)
and transactions (records + offsets in one SQLite transaction). Call inside a write
transaction."""

from __future__ import annotations

import sqlite3

from millstream.streams._local import batch as batchfmt

__all__ = ["insert_batch", "next_offset"]


def next_offset(conn: sqlite3.Connection, stream_id: int, partition: int) -> int | None:
    """The partition's next offset, or None if the stream was deleted."""
    row = conn.execute(
        "SELECT next_offset FROM partitions WHERE stream_id=? AND partition=?",
        (stream_id, partition),
    ).fetchone()
    return int(row[0]) if row else None


def insert_batch(conn: sqlite3.Connection, stream_id: int, partition: int, base: int,
                 count: int, max_ts: int, size: int, payload: bytes, payload_crc: int) -> int:
    """Store one encoded batch at ``base`` and return the partition's new next offset."""
    end = base + count
    conn.execute(
        "INSERT INTO batches (stream_id, partition, base_offset, end_offset, count, max_ts, "
        "size, crc, payload) VALUES (?,?,?,?,?,?,?,?,?)",
        (stream_id, partition, base, end, count, max_ts, size,
         batchfmt.checksum(payload_crc, stream_id, partition, base, count), payload),
    )
    conn.execute(
        "UPDATE partitions SET next_offset=?, bytes=bytes+? WHERE stream_id=? AND partition=?",
        (end, size, stream_id, partition),
    )
    return end
