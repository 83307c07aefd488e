"""Committing a group's offsets on the embedded log, in one write transaction: fenced (only
the member holding a partition commits for it), each offset within its partition's end, and
a transaction's batch rows written with them (``commit_with``), so both appear or neither."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from millstream.errors import FencedError, OffsetOutOfRangeError
from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.streams._local import fetch, groups
from millstream.streams._local.db import write_txn

__all__ = ["commit_offsets"]


def commit_offsets(conn: sqlite3.Connection, group: str, member_id: str,
                   chosen: dict[groups.Slot, int],
                   name_of: Callable[[groups.Slot], StreamPartition],
                   appends: Callable[[sqlite3.Connection], None] | None) -> None:
    """Commit ``chosen`` (next offset by partition) for ``member_id`` of ``group`` and run
    ``appends``; ``FencedError`` naming the partitions another member holds now, and nothing
    committed. sqlite3 errors are the caller's to translate."""
    now = time.time_ns() // 1_000_000
    with write_txn(conn):
        lost = groups.check_holder(conn, group, member_id, {s: name_of(s) for s in chosen})
        if lost:
            raise FencedError(
                f"group {group!r} moved {', '.join(map(str, sorted(lost)))} to "
                "another member; this consumer can no longer commit for them (nothing "
                "was committed) — poll again to get the current assignment"
            )
        for slot, end in fetch.ranges(conn, chosen).items():
            if chosen[slot] > end[1]:
                raise OffsetOutOfRangeError(
                    f"commit offset {chosen[slot]} for {name_of(slot)} is past its end "
                    f"{end[1]}"
                )
        conn.executemany(
            "INSERT OR REPLACE INTO group_offsets (group_name, stream_id, partition, "
            "next_offset, committed_ms) VALUES (?,?,?,?,?)",
            [(group, s, p, off, now) for (s, p), off in chosen.items()],
        )
        if appends is not None:
            appends(conn)
        fault_point("log.commit_offsets.before_commit")
