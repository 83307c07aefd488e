"""Retention on the embedded log: drop batches past a stream's age or size bound, compact.

Runs inside writers (a producer's writer thread every ``retention_check_ms``) and on demand
(``LocalAdmin.enforce_retention``); there is no server process. Age and size retention delete
whole batches from the front of a partition and advance its ``start_offset``. Compaction
rewrites batches so only the latest record per key is kept (a tombstone is kept until it is
``tombstone_age`` old, then it goes too); offsets never change. Freed pages are returned to the
file system with ``incremental_vacuum`` so the file does not grow after retention.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from millstream.faults import fault_point
from millstream.records import Headers, record_size
from millstream.streams._info import to_ms
from millstream.streams._local import _segments as segments
from millstream.streams._local import batch as batchfmt
from millstream.streams._local import catalog
from millstream.streams._local.db import translate

__all__ = ["compact_partition", "enforce"]

log = logging.getLogger(__name__)
_COMPACT_MIN_DIRTY = 1024 * 1024


def enforce(
    conn: sqlite3.Connection, path: Path, stream_ids: Iterable[int] | None = None,
    *, now_ms: int | None = None, force_compact: bool = False,
) -> int:
    """Apply every bounded stream's retention; return the number of batches removed."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    wanted = set(stream_ids) if stream_ids is not None else None
    removed = 0
    compacted = False
    try:
        for meta in catalog.all_streams(conn):
            if meta.retention.forever or (wanted is not None and meta.id not in wanted):
                continue
            for partition in range(meta.partitions):
                removed += _trim_partition(conn, meta, partition, now)
                if meta.retention.compact:
                    compacted = True  # it may move rows out of segment files
                    removed += compact_partition(conn, path, meta, partition, now,
                                                 force=force_compact)
        if removed:
            conn.execute("PRAGMA incremental_vacuum")
        if removed or compacted:
            segments.collect(conn)
    except sqlite3.Error as exc:
        raise translate(exc, path, "applying retention") from exc
    return removed


def _trim_partition(conn: sqlite3.Connection, meta: catalog.StreamMeta, partition: int,
                    now: int) -> int:
    r = meta.retention
    if r.max_age is None and r.max_bytes is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT next_offset, bytes FROM partitions WHERE stream_id=? AND partition=?",
            (meta.id, partition),
        ).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return 0
        end, total = row
        new_start: int | None = None
        if r.max_age is not None:
            kept = conn.execute(
                "SELECT min(base_offset) FROM batches WHERE stream_id=? AND partition=? "
                "AND max_ts >= ?", (meta.id, partition, now - to_ms(r.max_age)),
            ).fetchone()[0]
            new_start = kept if kept is not None else end
        if r.max_bytes is not None and total > r.max_bytes:
            rows = conn.execute(
                "SELECT end_offset, size FROM batches WHERE stream_id=? AND partition=? "
                "ORDER BY end_offset", (meta.id, partition),
            ).fetchall()
            excess = total - r.max_bytes
            for batch_end, size in rows[:-1]:  # the newest batch always stays
                if excess <= 0:
                    break
                excess -= size
                new_start = max(new_start or 0, batch_end)
        if new_start is None:
            conn.execute("ROLLBACK")
            return 0
        freed = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM batches WHERE stream_id=? "
            "AND partition=? AND end_offset <= ?", (meta.id, partition, new_start),
        ).fetchone()
        if freed[0] == 0:
            conn.execute("ROLLBACK")
            return 0
        conn.execute(
            "DELETE FROM batches WHERE stream_id=? AND partition=? AND end_offset <= ?",
            (meta.id, partition, new_start),
        )
        first = conn.execute(
            "SELECT min(base_offset) FROM batches WHERE stream_id=? AND partition=?",
            (meta.id, partition),
        ).fetchone()[0]
        conn.execute(
            "UPDATE partitions SET start_offset=max(start_offset, ?), bytes=bytes-?, "
            "clean_bytes=max(clean_bytes-?, 0) WHERE stream_id=? AND partition=?",
            (first if first is not None else end, freed[1], freed[1], meta.id, partition),
        )
        fault_point("log.retention.before_commit")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("retention removed %d batches from %s[%d]", freed[0], meta.name, partition)
    return int(freed[0])


def compact_partition(
    conn: sqlite3.Connection, path: Path, meta: catalog.StreamMeta, partition: int, now: int,
    *, force: bool = False,
) -> int:
    """Keep only the latest record per key in one partition; return batches removed.

    Runs when the bytes written since the last compaction reach the compacted size (at least
    1 MiB), or always with ``force``. Holds the write lock while it rewrites the partition.
    The newest batch stays as written (like Kafka's active segment): its end offset is the
    partition's end, so a reader's position still reaches the end (lag 0) after compaction.
    """
    where = f"stream {meta.name!r} partition {partition}"
    conn.execute("BEGIN IMMEDIATE")
    try:
        total, clean = conn.execute(
            "SELECT bytes, clean_bytes FROM partitions WHERE stream_id=? AND partition=?",
            (meta.id, partition),
        ).fetchone()
        if not force and total - clean < max(clean, _COMPACT_MIN_DIRTY):
            conn.execute("ROLLBACK")
            return 0
        rows = conn.execute(
            "SELECT id, base_offset, count, crc, payload, segment FROM batches "
            "WHERE stream_id=? AND partition=? ORDER BY end_offset", (meta.id, partition),
        ).fetchall()
        decoded = []
        latest: dict[bytes | None, int] = {}
        db = segments.database_of(conn)  # where readers and writers look (symlinks resolved)
        for rid, base, count, crc, payload, segment in rows:
            if segment is not None:  # under the write lock: nothing can have removed it
                stored = segments.read(db, segment, payload, where, base, count)
                if stored is None:
                    raise segments.missing(db, segment, payload, where, base, count)
                payload = stored
            ts, keys, values, headers, offsets = batchfmt.decode(
                payload, crc, meta.id, partition, base, count, where)
            offs = offsets if offsets is not None else list(range(base, base + count))
            decoded.append((rid, base, ts, keys, values, headers, offs))
            for key, off in zip(keys, offs, strict=True):
                latest[key] = off
        tombstone_before = now - to_ms(meta.retention.tombstone_age)
        removed = 0
        new_total = 0
        newest = decoded[-1][0] if decoded else None
        for rid, base, ts, keys, values, headers, offs in decoded:
            keep = [
                i for i, (key, off) in enumerate(zip(keys, offs, strict=True))
                if latest[key] == off and (values[i] is not None or ts[i] >= tombstone_before)
            ]
            if len(keep) == len(offs) or rid == newest:
                new_total += _size(keys, values, headers, range(len(offs)))
                continue
            if not keep:
                conn.execute("DELETE FROM batches WHERE id=?", (rid,))
                removed += 1
                continue
            k_ts = [ts[i] for i in keep]
            payload = batchfmt.encode(
                k_ts, [keys[i] for i in keep], [values[i] for i in keep],
                [headers[i] for i in keep] if headers is not None else None,
                [offs[i] for i in keep],
            )
            size = _size(keys, values, headers, keep)
            new_total += size
            crc = batchfmt.checksum(batchfmt.payload_crc(payload), meta.id, partition, base,
                                    len(keep))
            conn.execute(
                "UPDATE batches SET count=?, max_ts=?, size=?, crc=?, payload=?, segment=NULL "
                "WHERE id=?",
                (len(keep), max(k_ts), size, crc, payload, rid),
            )
        conn.execute(
            "UPDATE partitions SET bytes=?, clean_bytes=? WHERE stream_id=? AND partition=?",
            (new_total, new_total, meta.id, partition),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return removed


def _size(keys: list[bytes | None], values: list[bytes | None],
          headers: list[Headers] | None, indexes: Iterable[int]) -> int:
    return sum(
        record_size(keys[i], values[i], headers[i] if headers is not None else None)
        for i in indexes
    )
