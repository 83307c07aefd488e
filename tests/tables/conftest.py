"""Tables tests run on SQLite and, where it matters, on the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import millstream
from millstream import Streams
from millstream.tables import Tables, open_tables


@pytest.fixture(params=["sqlite", "postgres"])
def tables_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def streams_url(tmp_path: Path) -> str:
    return f"local:{tmp_path / 'log'}?durability=process"


@pytest.fixture
def streams(streams_url: str) -> Iterator[Streams]:
    with millstream.open_streams(streams_url) as handle:
        yield handle


@pytest.fixture
def tables(tables_url: str) -> Iterator[Tables]:
    with open_tables(tables_url) as handle:
        yield handle
