"""The embedded log and the SQLite tables close every SQLite connection they open: in
``close()``, in a background thread when it ends, and at once when opening fails.

A connection left to the garbage collector is a ``ResourceWarning`` on Python 3.13 (an error
under the suite's warning filter); these tests see the open file handles themselves, so they
hold on every Python."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import millstream
from millstream.errors import ConfigError
from millstream.tables import open_tables


def open_handles(path: Path) -> int:
    """How many file descriptors of this process are open on ``path``."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:  # closed while listing
            continue
    return count


def test_streams_producers_and_consumers_leave_no_connection_open(tmp_path: Path) -> None:
    db = tmp_path / "log" / "streams.db"
    with millstream.open_streams(f"local:{tmp_path / 'log'}?heartbeat_interval_ms=50") as streams:
        streams.admin().create_stream("s", 2)
        with streams.open_producer() as producer:
            producer.send("s", b"x", key=b"k").wait(5)
        with streams.open_consumer("g") as consumer:  # a group: a heartbeat thread too
            consumer.subscribe(["s"])
            assert [r.value for r in consumer.poll(timeout=2)] == [b"x"]
        with streams.open_consumer() as reader:
            reader.subscribe(["s"])
            reader.poll(timeout=0.1)
    assert open_handles(db) == 0


def test_a_log_that_fails_to_open_closes_its_connection(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    with millstream.open_streams(f"local:{folder}"):
        pass
    db = folder / "streams.db"
    with closing(sqlite3.connect(db)) as conn, conn:  # closed, after committing
        conn.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(ConfigError, match="schema version 99") as caught:
        millstream.open_streams(f"local:{folder}")
    # the traceback still holds the frames that opened it: the connection must be closed
    assert caught.value.__traceback__ is not None
    assert open_handles(db) == 0


def test_sqlite_tables_close_their_connections_also_when_opening_fails(tmp_path: Path) -> None:
    path = tmp_path / "tables.db"
    with open_tables(f"sqlite:///{path}") as tables:
        tables.ensure_table("t").put("k", {"v": 1})
        with tables.table("t").export() as view:  # a read connection of its own
            assert view.documents == 1
    assert open_handles(path) == 0
    path.unlink()
    path.write_bytes(b"not a database, " * 100)
    with pytest.raises(millstream.MillstreamError) as caught:
        open_tables(f"sqlite:///{path}")
    assert caught.value.__traceback__ is not None
    assert open_handles(path) == 0
