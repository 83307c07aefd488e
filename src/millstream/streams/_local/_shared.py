"""The one SQLite connection a streams handle's admins share, used by one thread at a time.

A ``LocalStreams`` handle opens one connection for its admin, and every ``admin()`` it hands
out uses it; callers share a handle between threads (the video site's request threads, a test
platform's helpers). A connection holds one transaction at a time and its settings (the busy
timeout ``begin_immediate`` lowers and restores) are connection-wide, so two threads on it at
once collide ("cannot start a transaction within a transaction"), or worse, one thread's
``COMMIT``/``ROLLBACK`` ends the other's writes. Each admin call therefore holds this lock for
its whole use of the connection, transaction included. Admin calls are small and rare; the
hot paths (producers, consumers) have connections of their own and never take it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from millstream.errors import ClosedError

__all__ = ["SharedConnection"]


class SharedConnection:
    """A connection that threads take in turn (``use``); ``close`` waits for the current
    user, and a use after it raises ``ClosedError``."""

    def __init__(self, conn: sqlite3.Connection, url: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._url = url
        self._lock = threading.RLock()  # re-entered: ensure_stream calls create_stream

    @property
    def closed(self) -> bool:
        return self._conn is None

    def check_open(self) -> None:
        if self._conn is None:
            raise ClosedError(
                f"the streams handle for {self._url} is closed; open a new one with "
                "millstream.open_streams"
            )

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        """The connection, this thread's alone until the block ends."""
        with self._lock:
            self.check_open()
            assert self._conn is not None
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
