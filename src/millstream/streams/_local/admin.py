"""The embedded log's admin: create, list, describe and delete streams; inspect groups.

Every call holds the handle's shared connection alone (``SharedConnection.use``) from its
first statement to its last, so admins of one handle can be called from any threads."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from millstream._names import check_group_name, check_stream_name
from millstream.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    UnknownStreamError,
)
from millstream.records import StreamPartition
from millstream.streams._checks import (
    ResetTo,
    check_reset_partitions,
    check_reset_target,
    reset_offset_for,
)
from millstream.streams._info import (
    GroupInfo,
    MemberInfo,
    PartitionInfo,
    PartitionLag,
    Retention,
    StreamInfo,
    to_ms,
)
from millstream.streams._local import _segments as segments
from millstream.streams._local import catalog, retention
from millstream.streams._local._shared import SharedConnection
from millstream.streams._local._wakeup import ring
from millstream.streams._local.db import translate, write_txn

__all__ = ["MAX_PARTITIONS", "LocalAdmin"]

MAX_PARTITIONS = 10_000


class LocalAdmin:
    """Admin operations on the embedded log; see ``millstream.streams._base.Admin``."""

    def __init__(self, shared: SharedConnection, path: Path) -> None:
        self._shared = shared
        self._path = path

    def create_stream(
        self, name: str, partitions: int = 1, retention: Retention | None = None
    ) -> StreamInfo:
        check_stream_name(name)
        if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidRequestError(
                f"partitions={partitions!r} for stream {name!r}: give an integer from 1 to "
                f"{MAX_PARTITIONS}"
            )
        r = retention or Retention()
        with self._shared.use() as conn:
            self._create(conn, name, partitions, r)
            return self.describe_stream(name)

    def _create(self, conn: sqlite3.Connection, name: str, partitions: int,
                r: Retention) -> None:
        try:
            with write_txn(conn):
                if catalog.lookup(conn, name) is not None:
                    raise AlreadyExistsError(
                        f"stream {name!r} already exists; use ensure_stream to accept that, "
                        "or delete it first"
                    )
                cur = conn.execute(
                    "INSERT INTO streams (name, partitions, retention_ms, retention_bytes, "
                    "compact, tombstone_ms, created_ms) VALUES (?,?,?,?,?,?,?)",
                    (name, partitions, None if r.max_age is None else to_ms(r.max_age),
                     r.max_bytes, int(r.compact), to_ms(r.tombstone_age),
                     time.time_ns() // 1_000_000),
                )
                conn.executemany(
                    "INSERT INTO partitions (stream_id, partition) VALUES (?, ?)",
                    [(cur.lastrowid, p) for p in range(partitions)],
                )
        except sqlite3.Error as exc:
            raise translate(exc, self._path, f"creating stream {name!r}") from exc

    def ensure_stream(
        self, name: str, partitions: int = 1, retention: Retention | None = None
    ) -> StreamInfo:
        with self._shared.use():  # no other thread of this handle deletes it in between
            try:
                return self.create_stream(name, partitions, retention)
            except AlreadyExistsError:
                return self.describe_stream(name)

    def list_streams(self) -> list[str]:
        try:
            with self._shared.use() as conn:
                return [m.name for m in catalog.all_streams(conn)]
        except sqlite3.Error as exc:
            raise translate(exc, self._path, "listing streams") from exc

    def describe_stream(self, name: str) -> StreamInfo:
        try:
            with self._shared.use() as conn:
                meta = catalog.require(conn, name)
                rows = conn.execute(
                    "SELECT partition, start_offset, next_offset, bytes FROM partitions "
                    "WHERE stream_id=? ORDER BY partition", (meta.id,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self._path, f"describing stream {name!r}") from exc
        return StreamInfo(
            name=meta.name,
            partitions=tuple(PartitionInfo(p, s, e, b) for p, s, e, b in rows),
            retention=meta.retention,
        )

    def delete_stream(self, name: str) -> None:
        check_stream_name(name)
        try:
            with self._shared.use() as conn:
                with write_txn(conn):
                    meta = catalog.lookup(conn, name)
                    if meta is None:
                        raise UnknownStreamError(name)
                    for table in ("batches", "partitions", "group_owners", "group_offsets"):
                        conn.execute(f"DELETE FROM {table} WHERE stream_id=?", (meta.id,))
                    conn.execute("DELETE FROM streams WHERE id=?", (meta.id,))
                    conn.execute("UPDATE groups SET version=version+1")
                ring(self._path, [meta.id])  # its idle consumers drop its partitions
                conn.execute("PRAGMA incremental_vacuum")
                segments.collect(conn)
        except sqlite3.Error as exc:
            raise translate(exc, self._path, f"deleting stream {name!r}") from exc

    def list_groups(self) -> list[str]:
        try:
            with self._shared.use() as conn:
                rows = conn.execute(
                    "SELECT group_name FROM group_members UNION "
                    "SELECT group_name FROM group_offsets ORDER BY 1"
                ).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self._path, "listing groups") from exc
        return [r[0] for r in rows]

    def describe_group(self, group: str) -> GroupInfo:
        check_group_name(group)
        try:
            with self._shared.use() as conn:
                names = {m.id: m.name for m in catalog.all_streams(conn)}
                now = time.time_ns() // 1_000_000
                members = conn.execute(
                    "SELECT member_id, client, streams FROM group_members "
                    "WHERE group_name=? AND deadline_ms >= ? ORDER BY member_id", (group, now),
                ).fetchall()
                owners = conn.execute(
                    "SELECT stream_id, partition, member_id FROM group_owners "
                    "WHERE group_name=?", (group,),
                ).fetchall()
                offsets = dict(((s, p), o) for s, p, o in conn.execute(
                    "SELECT stream_id, partition, next_offset FROM group_offsets "
                    "WHERE group_name=?", (group,),
                ))
                ranges = {(s, p): (b, e) for s, p, b, e in conn.execute(
                    "SELECT stream_id, partition, start_offset, next_offset FROM partitions")}
        except sqlite3.Error as exc:
            raise translate(exc, self._path, f"describing group {group!r}") from exc
        owner_of = {(s, p): m for s, p, m in owners}
        live = {m for m, _, _ in members}
        member_infos = tuple(
            MemberInfo(
                member_id=m, client=client, streams=tuple(streams.split(",")),
                partitions=tuple(sorted(
                    StreamPartition(names[s], p) for (s, p), o in owner_of.items()
                    if o == m and s in names
                )),
            )
            for m, client, streams in members
        )
        touched = sorted(set(owner_of) | set(offsets), key=lambda sp: (names.get(sp[0], ""), sp[1]))
        lags = tuple(
            PartitionLag(
                stream=names[s], partition=p, committed=offsets.get((s, p)),
                end=ranges.get((s, p), (0, 0))[1], start=ranges.get((s, p), (0, 0))[0],
                owner=owner_of.get((s, p)) if owner_of.get((s, p)) in live else None,
            )
            for s, p in touched if s in names
        )
        return GroupInfo(name=group, members=member_infos, partitions=lags)

    def reset_offsets(
        self, group: str, stream: str, to: ResetTo
    ) -> dict[StreamPartition, int]:
        check_group_name(group)
        check_stream_name(stream)
        check_reset_target(group, to)
        now = time.time_ns() // 1_000_000
        try:
            with self._shared.use() as conn, write_txn(conn):
                meta = catalog.require(conn, stream)
                live = [r[0] for r in conn.execute(
                    "SELECT client FROM group_members WHERE group_name=? AND deadline_ms >= ? "
                    "ORDER BY member_id", (group, now),
                )]
                if live:
                    raise InvalidRequestError(
                        f"group {group!r} has {len(live)} live member(s) ({', '.join(live)}); "
                        "stop them (or wait for their session to expire), then reset again"
                    )
                ranges = conn.execute(
                    "SELECT partition, start_offset, next_offset FROM partitions "
                    "WHERE stream_id=? ORDER BY partition", (meta.id,),
                ).fetchall()
                chosen: dict[StreamPartition, int] = {}
                check_reset_partitions(stream, to, len(ranges))
                for p, start, end in ranges:
                    chosen[StreamPartition(stream, p)] = reset_offset_for(stream, p, start,
                                                                         end, to)
                conn.executemany(
                    "INSERT OR REPLACE INTO group_offsets (group_name, stream_id, partition, "
                    "next_offset, committed_ms) VALUES (?,?,?,?,?)",
                    [(group, meta.id, sp.partition, off, now) for sp, off in chosen.items()],
                )
        except sqlite3.Error as exc:
            raise translate(exc, self._path, f"resetting offsets of group {group!r}") from exc
        return chosen

    def enforce_retention(self, *, force_compact: bool = False) -> int:
        """Apply every stream's retention now (writers also do it periodically)."""
        with self._shared.use() as conn:
            return retention.enforce(conn, self._path, force_compact=force_compact)
