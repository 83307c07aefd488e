"""The embedded stream log: SQLite in WAL mode, the default backend (``local:`` URLs).

``local:`` keeps the database at ``$MILLSTREAM_HOME/streams.db`` (``./.millstream`` when
unset); ``local:PATH`` or ``local:///abs/path`` put it in that directory. Query options tune
it, e.g. ``local:?durability=process&session_timeout_ms=5000`` (see ``LocalOptions``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from rich.filesize import decimal

from millstream.errors import ConfigError
from millstream.streams._base import OffsetReset
from millstream.streams._local._shared import SharedConnection
from millstream.streams._local.admin import LocalAdmin
from millstream.streams._local.consumer import LocalConsumer
from millstream.streams._local.db import LocalOptions, connect
from millstream.streams._local.producer import LocalProducer
from millstream.streams._local.transaction import LocalTransactionalProducer

__all__ = ["DB_NAME", "LocalOptions", "LocalStreams", "check", "parse_local_url"]

DB_NAME = "streams.db"


def parse_local_url(url: str, home: Path) -> tuple[Path, LocalOptions]:
    """The database path and options a ``local:`` URL names; ``ConfigError`` if it is bad."""
    parts = urlsplit(url)
    if parts.scheme != "local":
        raise ConfigError(f"{url!r} is not a local: URL (expected local: or local:PATH)")
    raw = unquote((parts.netloc + parts.path) if parts.netloc else parts.path)
    directory = Path(raw).expanduser() if raw else home
    fields = {f.name: f for f in dataclasses.fields(LocalOptions)}
    values: dict[str, object] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in fields:
            raise ConfigError(
                f"unknown option {name!r} in {url!r}; known: {', '.join(sorted(fields))}"
            )
        if name == "durability":
            if value not in ("full", "process"):
                raise ConfigError(
                    f"durability={value!r} in {url!r}: use 'full' (survives OS crashes, the "
                    "default) or 'process' (survives process crashes only, faster)"
                )
            values[name] = value
            continue
        if name == "wakeup":
            if value not in ("auto", "poll"):
                raise ConfigError(
                    f"wakeup={value!r} in {url!r}: use 'auto' (idle consumers are woken by "
                    "the writers, polling where the OS cannot notify; the default) or 'poll'"
                )
            values[name] = value
            continue
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number <= 0:
            raise ConfigError(f"option {name}={value!r} in {url!r} must be a positive integer")
        values[name] = number
    return directory.absolute() / DB_NAME, LocalOptions(**values)  # type: ignore[arg-type]


class LocalStreams:
    """An open embedded log; see ``millstream.streams._base.Streams``.

    A handle may be shared between threads: producers, consumers and transactional
    producers each open their own connection, and the admins it hands out share one
    connection that each call holds alone for its whole transaction (``SharedConnection``).
    """

    def __init__(self, url: str, home: Path) -> None:
        self._url = url
        self.path, self.options = parse_local_url(url, home)
        self._admin_conn = SharedConnection(connect(self.path, self.options), url)

    @property
    def url(self) -> str:
        return self._url

    def _live(self) -> None:
        self._admin_conn.check_open()

    def admin(self) -> LocalAdmin:
        self._live()
        return LocalAdmin(self._admin_conn, self.path)

    def open_producer(self) -> LocalProducer:
        self._live()
        return LocalProducer(self.path, self.options)

    def open_consumer(self, group: str | None = None, *,
                      offset_reset: OffsetReset = "earliest") -> LocalConsumer:
        self._live()
        return LocalConsumer(self.path, self.options, group, offset_reset)

    def open_transactional_producer(self, transactional_id: str) -> LocalTransactionalProducer:
        self._live()
        return LocalTransactionalProducer(self.path, self.options, transactional_id)

    def close(self) -> None:
        self._admin_conn.close()  # waits for an admin call in another thread to finish

    def __enter__(self) -> LocalStreams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check(url: str, home: Path) -> str:
    """Open the log, list its streams and say where it is and how large (``millstream
    doctor``); raises what opening raises."""
    with LocalStreams(url, home) as streams:
        names = streams.admin().list_streams()
    size = sum(p.stat().st_size for p in (streams.path, streams.path.with_name(
        streams.path.name + "-wal")) if p.exists())
    return f"database {streams.path} ({decimal(size)}), {len(names)} stream(s)"

