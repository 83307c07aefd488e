"""Open a tables backend by URL, or check that it works (``millstream doctor``), through the
one table of backends (``millstream._backends``)."""

from __future__ import annotations

from millstream._backends import TABLES
from millstream.config import load_config
from millstream.tables._base import Tables

__all__ = ["check_tables", "open_tables"]


def open_tables(url: str | None = None) -> Tables:
    """Open the tables backend named by ``url`` (default: the configured one)."""
    config = load_config(tables=url)
    return TABLES.open(config.tables, config.home, None)


def check_tables(url: str | None = None) -> str:
    """Check the tables backend as ``open_tables`` would open it, creating nothing: SQLite's
    file opens (or its directory can be created); PostgreSQL answers, takes the credentials,
    has the database and lets the user create the schema. Returns what was found; raises the
    millstream error naming the fix."""
    config = load_config(tables=url)
    return TABLES.check(config.tables, config.home, None)
