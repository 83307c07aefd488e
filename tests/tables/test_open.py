"""Opening a tables backend: the default location, URL schemes, a damaged SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from millstream import ConfigError, CorruptDataError
from millstream.tables import Tables, open_tables
from millstream.tables._sqlite import SqliteTables


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


def test_a_new_file_gets_16_kb_pages_and_a_file_with_4_kb_pages_keeps_them_and_works(
        tmp_path: Path) -> None:
    import sqlite3

    def page_size(path: Path) -> int:
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("PRAGMA page_size").fetchone()[0])
        finally:
            conn.close()

    def checkpoint_pages(tables: Tables) -> int:  # ~40 MB of WAL between checkpoints
        return int(cast(SqliteTables, tables).connection().execute(
            "PRAGMA wal_autocheckpoint").fetchone()[0])

    new = tmp_path / "new.db"
    with open_tables("sqlite:///" + str(new).lstrip("/")) as tables:
        tables.create_table("t").put("k", {"v": 1})
        assert checkpoint_pages(tables) == 2500
    assert page_size(new) == 16384
    old = tmp_path / "old.db"  # as files were made before: 4 KB pages, already in WAL mode
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE before (x)")
    conn.close()
    for _ in range(2):
        with open_tables("sqlite:///" + str(old).lstrip("/")) as tables:
            t = tables.ensure_table("t", indexes=["v"])
            with t.transaction() as tx:
                tx.put_json([(f"k{i:04d}", f'{{"v": {i}}}') for i in range(3000)])
            assert t.count() == 3000 and t.get("k2999") == {"v": 2999}
            assert checkpoint_pages(tables) == 10_000
    assert page_size(old) == 4096
