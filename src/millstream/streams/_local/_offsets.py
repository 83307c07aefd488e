"""A consumer's group offsets on the embedded log: what the group has committed, and a
commit made only while this consumer is still the member that holds its partitions (the
fenced write itself is ``commit.commit_offsets``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from millstream.errors import FencedError
from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.streams._local import catalog, groups
from millstream.streams._local.commit import commit_offsets

__all__ = ["commit_as_member", "committed_offsets"]


def committed_offsets(conn: sqlite3.Connection, group: str, wanted: list[StreamPartition]
                      ) -> dict[StreamPartition, int | None]:
    """``group``'s committed next offset for each of ``wanted`` (None where never);
    sqlite3 errors are the caller's to translate."""
    rows = {
        (s, p): o for s, p, o in conn.execute(
            "SELECT stream_id, partition, next_offset FROM group_offsets "
            "WHERE group_name=?", (group,))
    }
    ids = {}
    for sp in wanted:
        meta = catalog.require(conn, sp[0])
        ids[sp] = (meta.id, sp[1])
    return {StreamPartition(*sp): rows.get(ids[sp]) for sp in wanted}


def commit_as_member(conn: sqlite3.Connection, group: str, member_id: str | None,
                     owned_member: str | None, chosen: dict[groups.Slot, int],
                     name_of: Callable[[groups.Slot], StreamPartition],
                     appends: Callable[[sqlite3.Connection], None] | None) -> None:
    """Commit ``chosen`` for ``member_id`` (the membership now; None once it left) if it is
    still ``owned_member`` (the one the consumer's positions were taken in); else
    ``FencedError`` and nothing committed. sqlite3 errors are the caller's to translate."""
    if member_id is None:
        raise FencedError(
            f"this consumer left group {group!r} (no poll within max_poll_interval_ms); "
            "poll again to rejoin, then commit"
        )
    if member_id != owned_member:
        raise FencedError(
            f"this consumer's membership of group {group!r} expired (no heartbeat within "
            "session_timeout_ms, e.g. the process was paused) and it rejoined; its "
            "partitions may have moved in between, so nothing was committed — poll again "
            "to get the current assignment"
        )
    commit_offsets(conn, group, member_id, chosen, name_of, appends)
    fault_point("log.commit_offsets.after_commit")
