"""Reading the embedded log's catalog: which streams exist, their partitions and retention."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from millstream._names import check_stream_name
from millstream.errors import UnknownStreamError
from millstream.streams._base import Retention

__all__ = ["StreamMeta", "all_streams", "lookup", "require"]

_SELECT = (
    "SELECT id, name, partitions, retention_ms, retention_bytes, compact, tombstone_ms "
    "FROM streams"
)


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """A stream's row in the catalog."""

    id: int
    name: str
    partitions: int
    retention: Retention


def _meta(row: tuple[int, str, int, int | None, int | None, int, int]) -> StreamMeta:
    return StreamMeta(
        row[0], row[1], row[2],
        Retention(max_age=None if row[3] is None else row[3] / 1000, max_bytes=row[4],
                  compact=bool(row[5]), tombstone_age=row[6] / 1000),
    )


def lookup(conn: sqlite3.Connection, name: str) -> StreamMeta | None:
    """The stream named ``name``, or None."""
    row = conn.execute(_SELECT + " WHERE name=?", (name,)).fetchone()
    return _meta(row) if row else None


def require(conn: sqlite3.Connection, name: str) -> StreamMeta:
    """The stream named ``name``; ``UnknownStreamError`` (or a name error) if there is none."""
    check_stream_name(name)
    meta = lookup(conn, name)
    if meta is None:
        raise UnknownStreamError(name)
    return meta


def all_streams(conn: sqlite3.Connection) -> list[StreamMeta]:
    """Every stream, sorted by name."""
    return [_meta(row) for row in conn.execute(_SELECT + " ORDER BY name")]
