"""Tables: documents by key, fed from streams. Open a backend by URL.

``sqlite:///abs/path/tables.db`` (the default, under ``MILLSTREAM_HOME``) keeps every table in
one SQLite file; ``postgresql://user@host:port/db`` uses PostgreSQL (JSONB) and needs the
``postgres`` extra. Backends are imported lazily.

A ``Materializer`` feeds a table from a stream; ``rebuild`` recreates one by replaying it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from millstream.config import load_config
from millstream.errors import ConfigError
from millstream.tables.base import Document, Export, Scalar, Table, TableInfo, Tables, Writes
from millstream.tables.materialize import Materializer, MaterializerStatistics, rebuild

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
    "open_tables",
    "rebuild",
]

SCHEMES = ("sqlite", "postgresql")


def open_tables(url: str | None = None) -> Tables:
    """Open the tables backend named by ``url`` (default: the configured one)."""
    target = load_config(tables=url).tables
    scheme = urlsplit(target).scheme
    if scheme == "sqlite":
        path = urlsplit(target).path
        if not path or path == "/":
            raise ConfigError(
                f"tables URL {target!r} names no file; use sqlite:///absolute/path/tables.db")
        from millstream.tables.sqlite import SqliteTables

        return SqliteTables(target, Path(path))
    if scheme in ("postgresql", "postgres"):
        from millstream.tables.postgres import PostgresTables

        return PostgresTables(target)
    raise ConfigError(
        f"tables URL {target!r} has scheme {scheme or '(none)'!r}; supported: "
        "sqlite:///path/to/tables.db, postgresql://user@host:port/database"
    )
