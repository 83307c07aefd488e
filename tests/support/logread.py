"""Read a whole stream back for crash and soak checks, and look inside the database file."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import millstream
from millstream import Record, StreamPartition
from tests.support.waiting import wait_until

__all__ = ["by_partition", "db_path", "integrity", "read_all"]


def db_path(url: str) -> Path:
    """The database file a plain ``local:DIR`` URL names."""
    return Path(url.split(":", 1)[1].split("?", 1)[0]) / "streams.db"


def read_all(streams: millstream.Streams, stream: str, timeout: float = 30.0) -> list[Record]:
    """Every retained record of ``stream``, read by a fresh standalone consumer from the start
    of each partition up to the end the admin reports when the read begins."""
    info = streams.admin().describe_stream(stream)
    ends = {StreamPartition(stream, p.partition): p.end for p in info.partitions}
    records: list[Record] = []
    with streams.open_consumer() as consumer:
        consumer.subscribe([stream])
        consumer.seek_to_beginning()

        def caught_up() -> bool:
            records.extend(consumer.poll(max_records=10_000, timeout=0.05))
            return all(consumer.position(sp) >= end for sp, end in ends.items())

        wait_until(caught_up, timeout, f"reading {stream} to its end {ends}", interval=0)
    return records


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    return out


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of the database, through a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
