"""Consumer-group membership on the embedded log, without a coordinator process.

Members register a row with a lease (``deadline_ms``) that they renew by heartbeat. Any member
that notices a change — its own join or leave, or a lease that expired — recomputes the whole
assignment in the same transaction: partition ``p`` of a stream goes to the ``p mod k``-th of
the ``k`` live members subscribed to it, sorted by member id (so equally partitioned streams
are co-assigned, which joins need). Each partition row names its current holder and its target
(``next_member_id``). A partition whose holder is alive moves only when the holder releases it
(from ``poll``, after its ``on_revoke`` callback could commit); one whose holder is gone moves
at once. Only the holder may commit offsets for a partition: that is the fencing. Every
change of the assignment rings the group's doorbell once committed (``_wakeup``), so idle
members look at it at once.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import defaultdict
from pathlib import Path

from millstream.records import StreamPartition
from millstream.streams._local import catalog
from millstream.streams._local._wakeup import ring
from millstream.streams._local.db import write_txn

__all__ = [
    "Slot",
    "check_holder",
    "heartbeat",
    "join",
    "leave",
    "new_member_id",
    "ownership",
    "release",
    "version",
]

Slot = tuple[int, int]  # (stream id, partition)


def new_member_id(now_ms: int) -> str:
    """A unique member id that sorts by join time."""
    return f"{now_ms:013d}-{uuid.uuid4().hex[:10]}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def join(conn: sqlite3.Connection, group: str, member_id: str, client: str,
         streams: list[str], session_ms: int) -> None:
    """Add a member and rebalance."""
    with write_txn(conn):
        now_ms = _now_ms()  # read once the lock is held, so a wait for it cannot eat the lease
        conn.execute("INSERT OR IGNORE INTO groups (name) VALUES (?)", (group,))
        conn.execute(
            "INSERT OR REPLACE INTO group_members (group_name, member_id, client, streams, "
            "deadline_ms) VALUES (?,?,?,?,?)",
            (group, member_id, client, ",".join(streams), now_ms + session_ms),
        )
        _reap(conn, group, now_ms)
        _rebalance(conn, group)
    _ring(conn, group)


def _ring(conn: sqlite3.Connection, group: str) -> None:
    """Ring ``group``'s doorbell: its assignment changed (call after the commit)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            ring(Path(file), group=group)


def heartbeat(conn: sqlite3.Connection, group: str, member_id: str, session_ms: int) -> bool:
    """Renew the lease, expire dead members; False if this member was itself expired."""
    with write_txn(conn):
        now_ms = _now_ms()
        renewed = conn.execute(
            "UPDATE group_members SET deadline_ms=? WHERE group_name=? AND member_id=?",
            (now_ms + session_ms, group, member_id),
        ).rowcount
        changed = bool(_reap(conn, group, now_ms)) or not renewed
        if changed:
            _rebalance(conn, group)
    if changed:
        _ring(conn, group)
    return bool(renewed)


def leave(conn: sqlite3.Connection, group: str, member_id: str) -> None:
    """Remove a member; its partitions go to the others at once."""
    with write_txn(conn):
        conn.execute(
            "DELETE FROM group_members WHERE group_name=? AND member_id=?", (group, member_id)
        )
        _rebalance(conn, group)
    _ring(conn, group)


def _reap(conn: sqlite3.Connection, group: str, now_ms: int) -> int:
    return conn.execute(
        "DELETE FROM group_members WHERE group_name=? AND deadline_ms < ?", (group, now_ms)
    ).rowcount


def _rebalance(conn: sqlite3.Connection, group: str) -> None:
    members = conn.execute(
        "SELECT member_id, streams FROM group_members WHERE group_name=? ORDER BY member_id",
        (group,),
    ).fetchall()
    alive = {m for m, _ in members}
    subscribers: dict[str, list[str]] = defaultdict(list)
    for member_id, streams in members:
        for name in streams.split(","):
            subscribers[name].append(member_id)
    target: dict[Slot, str] = {}
    for name, subs in subscribers.items():
        meta = catalog.lookup(conn, name)
        if meta is None:
            continue
        for p in range(meta.partitions):
            target[(meta.id, p)] = subs[p % len(subs)]
    existing = {
        (s, p): holder for s, p, holder in conn.execute(
            "SELECT stream_id, partition, member_id FROM group_owners WHERE group_name=?",
            (group,),
        )
    }
    for slot in existing.keys() - target.keys():
        conn.execute(
            "DELETE FROM group_owners WHERE group_name=? AND stream_id=? AND partition=?",
            (group, *slot),
        )
    conn.executemany(
        "INSERT OR REPLACE INTO group_owners (group_name, stream_id, partition, member_id, "
        "next_member_id) VALUES (?,?,?,?,?)",
        [
            (group, s, p, existing[(s, p)] if existing.get((s, p)) in alive else t, t)
            for (s, p), t in target.items()
        ],
    )
    conn.execute("UPDATE groups SET version=version+1 WHERE name=?", (group,))


def version(conn: sqlite3.Connection, group: str) -> int:
    """The group's change counter: any join, leave, expiry or release bumps it."""
    row = conn.execute("SELECT version FROM groups WHERE name=?", (group,)).fetchone()
    return int(row[0]) if row else -1


def ownership(conn: sqlite3.Connection, group: str, member_id: str) -> tuple[set[Slot], set[Slot]]:
    """(partitions this member holds, those among them it must give up)."""
    held: set[Slot] = set()
    revoking: set[Slot] = set()
    for s, p, nxt in conn.execute(
        "SELECT stream_id, partition, next_member_id FROM group_owners "
        "WHERE group_name=? AND member_id=?", (group, member_id),
    ):
        held.add((s, p))
        if nxt != member_id:
            revoking.add((s, p))
    return held, revoking


def release(conn: sqlite3.Connection, group: str, member_id: str, slots: set[Slot]) -> None:
    """Hand ``slots`` to their targets."""
    with write_txn(conn):
        conn.executemany(
            "UPDATE group_owners SET member_id=next_member_id WHERE group_name=? "
            "AND stream_id=? AND partition=? AND member_id=?",
            [(group, s, p, member_id) for s, p in slots],
        )
        conn.execute("UPDATE groups SET version=version+1 WHERE name=?", (group,))
    _ring(conn, group)


def check_holder(conn: sqlite3.Connection, group: str, member_id: str,
                 slots: dict[Slot, StreamPartition]) -> list[StreamPartition]:
    """The partitions among ``slots`` this member does not hold (inside a write transaction)."""
    lost = []
    for slot, sp in slots.items():
        row = conn.execute(
            "SELECT member_id FROM group_owners WHERE group_name=? AND stream_id=? "
            "AND partition=?", (group, *slot),
        ).fetchone()
        if row is None or row[0] != member_id:
            lost.append(sp)
    return lost
