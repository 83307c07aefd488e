"""What every page of the console works on: the platform's stores, the token, the history.

A page's handler gets it with ``context(request)``. The streams backend is open from the
start (the history reads it); the file store and the tables are opened at first use, so a
console whose PostgreSQL is down still shows its streams and says what failed where tables
are asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from millstream.console._history import MetricsHistory
from millstream.console._signins import SignInGuard
from millstream.errors import ConfigError
from millstream.streams._base import Streams

if TYPE_CHECKING:
    from millstream.files import FileStore
    from millstream.tables import Tables

__all__ = ["ConsoleContext", "context"]


@dataclass
class ConsoleContext:
    """The console's platform: ``streams`` (open), ``history`` (of millstream.metrics),
    ``token`` (None: read-only), and openers for the file store and the tables."""

    streams: Streams
    history: MetricsHistory
    token: str | None = None
    open_files: Callable[[], FileStore] | None = None
    open_tables: Callable[[], Tables] | None = None
    #: what the console serves, for the header: "local:", "kafka://…"
    streams_url: str = ""
    #: wrong tokens per address (sign-in is refused for a while after too many)
    signins: SignInGuard = field(default_factory=SignInGuard)
    _files: FileStore | None = field(default=None, init=False, repr=False)
    _tables: Tables | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def read_only(self) -> bool:
        return self.token is None

    @property
    def files(self) -> FileStore:
        """The file store, opened at first use."""
        with self._lock:
            if self._files is None:
                if self.open_files is None:
                    raise ConfigError("this console was started without a file store")
                self._files = self.open_files()
            return self._files

    @property
    def tables(self) -> Tables:
        """The tables backend, opened at first use."""
        with self._lock:
            if self._tables is None:
                if self.open_tables is None:
                    raise ConfigError("this console was started without a tables backend")
                self._tables = self.open_tables()
            return self._tables

    def close(self) -> None:
        """Stop the history and close what the console opened (not what it was given)."""
        self.history.stop()
        with self._lock:
            if self._tables is not None and self.open_tables is not None:
                self._tables.close()
            if self._files is not None and self.open_files is not None:
                self._files.close()
            self._tables = None
            self._files = None


def context(request: Request) -> ConsoleContext:
    """The console of the app that serves ``request``."""
    ctx: ConsoleContext = request.app.state.console
    return ctx
