"""Reading a partition of the embedded log: its batch rows past a position turned into records
(``tuple.__new__`` over columns: no per-record Python frame), a batch larger than what is
wanted handed back whole for the consumer to buffer; a partition's retained range; and the
first offset at or after a time."""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Iterable
from itertools import repeat
from pathlib import Path

from millstream.errors import CorruptDataError
from millstream.faults import fault_point
from millstream.records import Record
from millstream.streams._local import _segments as segments
from millstream.streams._local import batch as batchfmt
from millstream.streams._local.groups import Slot

__all__ = ["READ_BYTES", "Rest", "offset_for_time", "ranges", "read_batches"]

_new = tuple.__new__
#: a read of one partition stops after the batch that brings its payloads to this many bytes
READ_BYTES = 8 * 1024 * 1024

#: a batch read past what was wanted: its records, the index of the first not yet returned,
#: and the batch's end offset (where the position goes once they are all returned)
Rest = tuple[list[Record], int, int]


def read_batches(conn: sqlite3.Connection, name: str, slot: Slot, pos: int,
                 out: list[Record], need: int, gap: Callable[[], None]) -> tuple[int, Rest | None]:
    """Append to ``out`` the records of partition ``slot`` of stream ``name`` from offset
    ``pos`` until ``out`` holds ``need``; return the position after the last one appended,
    and the rest of a batch that held more than fit. ``gap()`` is called when the first batch
    begins after ``pos`` (retention may have removed records the reader has not read).
    Damage raises ``CorruptDataError`` — unless ``out`` already holds records: then they are
    returned, the position left at the damaged batch for the next read to raise.

    A read also stops after the batch that brings the payloads it read to ``READ_BYTES``: a
    poll of 10,000 records of 10 KB would otherwise hold 100 MB of values at once, and memory
    that large is fresh for every poll (measured: 4–5 µs a record spent in page faults, as
    much as reading and checking the record)."""
    sid, p = slot
    where = f"stream {name!r} partition {p}"
    # Rows are read one at a time from the cursor and it is closed as soon as enough
    # records are in: no row is fetched that this poll does not use, and the read
    # snapshot is released at once (an open statement would hold back checkpoints).
    cursor = conn.execute(
        "SELECT base_offset, end_offset, count, crc, payload, segment, id FROM batches "
        "WHERE stream_id=? AND partition=? AND end_offset>? ORDER BY end_offset",
        (sid, p, pos),
    )
    db: Path | None = None
    taken = 0
    try:
        first = True
        for base, end, count, crc, payload, segment, rid in cursor:
            if first and base > pos:
                gap()
            first = False
            try:
                if segment is not None:
                    db = db or segments.database_of(conn)
                    fault_point("log.read.before_segment")
                    stored = segments.read(db, segment, payload, where, base, count)
                    if stored is None:  # retention/compaction since this snapshot, or damage
                        cursor.close()
                        if _unchanged(conn, rid, segment, payload):
                            raise segments.missing(db, segment, payload, where, base, count)
                        if out:
                            return pos, None
                        return read_batches(conn, name, slot, pos, out, need, gap)
                    payload = stored
                ts, keys, values, headers, offsets = batchfmt.decode(
                    payload, crc, sid, p, base, count, where)
            except CorruptDataError:
                if out:  # the position is at the damaged batch: the next poll raises
                    return pos, None
                raise
            hs = headers if headers is not None else repeat((), count)
            if offsets is None:
                skip = pos - base if pos > base else 0
                offs: Iterable[int] = range(base + skip, end)
            else:
                skip = bisect.bisect_left(offsets, pos)
                offs = offsets[skip:]
            if skip:
                ts, keys, values = ts[skip:], keys[skip:], values[skip:]
                hs = list(hs)[skip:]
            built = map(_new, repeat(Record), zip(
                repeat(name), repeat(p), offs, ts, keys, values, hs))
            room = need - len(out)
            if len(ts) > room:
                records = list(built)
                out.extend(records[:room])
                return records[room - 1].offset + 1, (records, room, end)
            out.extend(built)  # straight into the result: no intermediate list
            pos = end
            taken += len(payload)
            if len(out) >= need or taken >= READ_BYTES:
                return pos, None
    finally:
        cursor.close()
    return pos, None


def _unchanged(conn: sqlite3.Connection, rid: int, segment: int, ref: bytes) -> bool:
    """Whether batch row ``rid`` still points at the same place in the same segment file, in
    a fresh snapshot. Retention deletes a row; compaction rewrites it in place (same id,
    payload now inline) and then deletes the file — either way the file going is not damage,
    and the row is read again."""
    row = conn.execute("SELECT segment, payload FROM batches WHERE id=?", (rid,)).fetchone()
    return row is not None and row[0] == segment and row[1] == ref


def ranges(conn: sqlite3.Connection, slots: Iterable[Slot]) -> dict[Slot, tuple[int, int]]:
    """Each partition's retained range: its first retained offset and its next offset."""
    out = {}
    for sid, p in slots:
        row = conn.execute(
            "SELECT start_offset, next_offset FROM partitions WHERE stream_id=? "
            "AND partition=?", (sid, p)).fetchone()
        out[(sid, p)] = (row[0], row[1]) if row else (0, 0)
    return out


def offset_for_time(conn: sqlite3.Connection, slot: Slot, ts_ms: int, where: str) -> int | None:
    """The offset of the first record of ``slot`` stamped at or after ``ts_ms``; ``None`` if
    there is none yet (the reader goes to the end)."""
    sid, p = slot
    row = conn.execute(
        "SELECT base_offset, count, crc, payload, segment, id FROM batches WHERE stream_id=? "
        "AND partition=? AND max_ts>=? ORDER BY end_offset LIMIT 1", (sid, p, ts_ms),
    ).fetchall()
    if not row:
        return None
    base, count, crc, payload, segment, rid = row[0]
    if segment is not None:
        db = segments.database_of(conn)
        stored = segments.read(db, segment, payload, where, base, count)
        if stored is None:
            if _unchanged(conn, rid, segment, payload):
                raise segments.missing(db, segment, payload, where, base, count)
            return offset_for_time(conn, slot, ts_ms, where)  # changed meanwhile: again
        payload = stored
    ts, _, _, _, offsets = batchfmt.decode(payload, crc, sid, p, base, count, where)
    offs = offsets if offsets is not None else range(base, base + count)
    for t, off in zip(ts, offs, strict=True):
        if t >= ts_ms:
            return int(off)
    return int(base + count)  # unreachable: max_ts >= ts_ms
