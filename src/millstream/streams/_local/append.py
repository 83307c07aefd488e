"""Writing one batch row and advancing its partition: shared by the producer (group commit)
and transactions (records + offsets in one SQLite transaction). Call inside a write
transaction."""

from __future__ import annotations

import sqlite3

from millstream.streams._local import _segments as segments
from millstream.streams._local import batch as batchfmt
from millstream.streams._local.db import LocalOptions

__all__ = ["insert_batch", "next_offset", "place"]


def next_offset(conn: sqlite3.Connection, stream_id: int, partition: int) -> int | None:
    """The partition's next offset, or None if the stream was deleted."""
    row = conn.execute(
        "SELECT next_offset FROM partitions WHERE stream_id=? AND partition=?",
        (stream_id, partition),
    ).fetchone()
    return int(row[0]) if row else None


def insert_batch(conn: sqlite3.Connection, stream_id: int, partition: int, base: int,
                 count: int, max_ts: int, size: int, payload: bytes, payload_crc: int,
                 segment: int | None = None) -> int:
    """Store one encoded batch at ``base`` and return the partition's new next offset. With
    ``segment``, ``payload`` is the batch's place in that segment file (``_segments``) and
    ``payload_crc`` still the CRC of the payload itself."""
    end = base + count
    conn.execute(
        "INSERT INTO batches (stream_id, partition, base_offset, end_offset, count, max_ts, "
        "size, crc, payload, segment) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (stream_id, partition, base, end, count, max_ts, size,
         batchfmt.checksum(payload_crc, stream_id, partition, base, count), payload, segment),
    )
    conn.execute(
        "UPDATE partitions SET next_offset=?, bytes=bytes+? WHERE stream_id=? AND partition=?",
        (end, size, stream_id, partition),
    )
    return end


def place(conn: sqlite3.Connection, payloads: list[list[bytes]],
          options: LocalOptions) -> list[tuple[bytes, int | None]]:
    """Each row's ``payload`` column and segment, from payloads given as their pieces
    (``batch.encode_parts``): large payloads appended (and fsynced) to a segment file first,
    inside the write transaction (see ``_segments``); the rest, and every payload when commits
    are not fsynced (``durability="process"``), stay inline."""
    synced = options.durability == "full"
    out: list[tuple[bytes, int | None]] = []
    big: list[int] = []
    for i, parts in enumerate(payloads):
        if synced and segments.external(parts):
            big.append(i)
            out.append((b"", None))  # its reference, below
        else:
            out.append((parts[0] if len(parts) == 1 else b"".join(parts), None))
    if big:
        number, refs = segments.write(conn, [payloads[i] for i in big], options.segment_bytes)
        for i, ref in zip(big, refs, strict=True):
            out[i] = (ref, number)
    return out
