"""Tables: documents by key, fed from streams. Open a backend by URL.

``sqlite:///abs/path/tables.db`` (the default, under ``MILLSTREAM_HOME``) keeps every table in
one SQLite file; ``postgresql://user@host:port/db`` uses PostgreSQL (JSONB) and needs the
``postgres`` extra. Backends are imported lazily, through one table from scheme to backend
that ``open_tables`` and ``check_tables`` (``millstream doctor``) share.

A ``Materializer`` feeds a table from a stream; ``rebuild`` recreates one by replaying it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from millstream._backend import Backend
from millstream.config import load_config
from millstream.errors import ConfigError
from millstream.tables._base import Document, Export, Scalar, Table, TableInfo, Tables, Writes
from millstream.tables._materialize import Materializer, MaterializerStatistics, rebuild

__all__ = [
    "SCHEMES",
    "Document",
    "Export",
    "Materializer",
    "MaterializerStatistics",
    "Scalar",
    "Table",
    "TableInfo",
    "Tables",
    "Writes",
    "check_tables",
    "open_tables",
    "rebuild",
]

def _sqlite_path(url: str) -> Path:
    path = urlsplit(url).path
    if not path or path == "/":
        raise ConfigError(
            f"tables URL {url!r} names no file; use sqlite:///absolute/path/tables.db")
    return Path(path)


def _open_sqlite(url: str, home: Path, options: Mapping[str, Any] | None) -> Tables:
    from millstream.tables._sqlite import SqliteTables

    return SqliteTables(url, _sqlite_path(url))


def _check_sqlite(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.tables._sqlite import check

    return check(_sqlite_path(url))


def _open_postgres(url: str, home: Path, options: Mapping[str, Any] | None) -> Tables:
    from millstream.tables._postgres import PostgresTables

    return PostgresTables(url)


def _check_postgres(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.tables._postgres import check

    return check(url)


_BACKENDS: dict[str, Backend[Tables]] = {
    "sqlite": Backend(_open_sqlite, _check_sqlite),
    "postgresql": Backend(_open_postgres, _check_postgres),
    "postgres": Backend(_open_postgres, _check_postgres),
}
SCHEMES = ("sqlite", "postgresql")


def _backend(target: str) -> Backend[Tables]:
    scheme = urlsplit(target).scheme
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError(
            f"tables URL {target!r} has scheme {scheme or '(none)'!r}; supported: "
            "sqlite:///path/to/tables.db, postgresql://user@host:port/database"
        )
    return backend


def open_tables(url: str | None = None) -> Tables:
    """Open the tables backend named by ``url`` (default: the configured one)."""
    config = load_config(tables=url)
    return _backend(config.tables).open(config.tables, config.home, None)


def check_tables(url: str | None = None) -> str:
    """Check the tables backend as ``open_tables`` would open it, creating nothing: SQLite's
    file opens (or its directory can be created); PostgreSQL answers, takes the credentials,
    has the database and lets the user create the schema. Returns what was found; raises the
    millstream error naming the fix."""
    config = load_config(tables=url)
    return _backend(config.tables).check(config.tables, config.home, None)
