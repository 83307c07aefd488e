"""Opening a tables backend: the default location, URL schemes, a damaged SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream import ConfigError, CorruptDataError
from millstream.tables import open_tables


def test_the_default_is_sqlite_under_millstream_home(_isolated_home: Path) -> None:
    with open_tables() as tables:
        tables.create_table("t").put("k", {"v": 1})
    assert (_isolated_home / "tables.db").is_file()
    with open_tables() as tables:
        assert tables.table("t").get("k") == {"v": 1}


def test_the_environment_names_the_backend(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_TABLES", "sqlite:///" + str(tmp_path / "x.db").lstrip("/"))
    with open_tables() as tables:
        tables.create_table("t")
    assert (tmp_path / "x.db").is_file()


@pytest.mark.parametrize("url", ["mysql://db/x", "tables.db", "sqlite://"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        open_tables(url)


def test_a_damaged_sqlite_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tables.db"
    path.write_bytes(b"this is not a database" * 400)
    with pytest.raises(CorruptDataError, match="damaged"):
        open_tables("sqlite:///" + str(path).lstrip("/"))
