"""Tables tests run on SQLite and, where it matters, on the session's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def tables_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def streams_url(tmp_path: Path) -> str:
    return f"local:{tmp_path / 'log'}?durability=process"
