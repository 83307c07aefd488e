"""``files gc`` refuses to scan backends that cannot be the platform's: an embedded log or
SQLite file that does not exist (opening would create it empty and every object would go),
backends holding nothing while the store holds objects, and tables lacking what the store
holds snapshots of. It names the backends it scans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import millstream
from millstream.cli.main import cli
from millstream.files import FileStore, open_files
from millstream.tables import open_tables
from millstream.tables._snapshot import write_snapshot


def _urls(store: FileStore) -> set[str]:
    return {r.url for r in store.list()}


def _gc(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli, ["files", *args, "gc", "--older-than", "0s"])
    return done.exit_code, done.output


def test_gc_on_a_shell_without_the_platforms_home_refuses_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the platform: its store, streams and tables under h1
    h1 = tmp_path / "h1"
    monkeypatch.setenv("MILLSTREAM_HOME", str(h1))
    store = open_files()
    row, record = store.put("t/row", b"r" * 10), store.put("t/record", b"e" * 10)
    with millstream.open_streams() as streams, open_tables() as tables:
        streams.admin().create_stream("events", 1)
        with streams.open_producer() as producer:
            producer.send("events", json.dumps({"f": record.model_dump()}).encode())
        tables.ensure_table("videos").put("v", {"f": row.model_dump()})
    # another shell: a fresh home, the store named by URL
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("MILLSTREAM_HOME", str(fresh))
    code, output = _gc("--files", store.url)
    assert code == 1, output
    assert (f"Error: refusing to collect garbage: streams local: does not exist (no "
            f"{fresh}/streams.db); tables sqlite://{fresh}/tables.db does not exist (no "
            f"{fresh}/tables.db); so no reference to any object could be found and every "
            "object would be deleted" in output)
    assert "--streams URL, --tables URL" in output
    assert _urls(store) == {row.url, record.url}
    assert not (fresh / "streams.db").exists() and not (fresh / "tables.db").exists()
    # pointed at the platform's backends, gc keeps both and names what it scanned
    done = CliRunner().invoke(cli, ["--streams", f"local:{h1}", "files", "--files", store.url,
                                    "gc", "--older-than", "0s", "--tables",
                                    f"sqlite://{h1}/tables.db"])
    assert done.exit_code == 0, done.output
    assert (f"gc of {store.url}: references from streams local:{h1} and tables "
            f"sqlite://{h1}/tables.db") in done.output
    assert "deleted 0 object(s)" in done.output
    assert _urls(store) == {row.url, record.url}


def test_gc_refuses_empty_backends_while_the_store_holds_objects_unless_forced() -> None:
    store = open_files()
    orphan = store.put("o/orphan", b"o" * 10)
    with millstream.open_streams(), open_tables():
        pass  # both exist, empty
    code, output = _gc()
    assert code == 1, output
    assert "hold no stream and no table, but" in output and store.url in output
    assert _urls(store) == {orphan.url}
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s", "--force"])
    assert done.exit_code == 0, done.output
    assert f"deleted {orphan.url} (10 bytes)" in done.output
    assert _urls(store) == set()


def test_gc_refuses_tables_lacking_a_table_the_store_holds_snapshots_of_unless_forced(
        tmp_path: Path) -> None:
    store = open_files()
    doc, orphan = store.put("t/doc", b"d" * 10), store.put("t/orphan", b"o" * 10)
    with millstream.open_streams() as streams, open_tables() as tables:
        streams.admin().create_stream("events", 1)
        videos = tables.ensure_table("videos")
        videos.put("v", {"f": doc.model_dump()})
        write_snapshot(videos, store)
    other = f"sqlite://{tmp_path}/other.db"
    with open_tables(other) as tables:
        tables.ensure_table("unrelated")
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s", "--tables", other])
    assert done.exit_code == 1, done.output
    assert (f"holds snapshots of table(s) videos that tables {other} lacks" in done.output)
    assert orphan.url in _urls(store)
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s", "--tables", other,
                                    "--force"])
    assert done.exit_code == 0, done.output
    assert f"deleted {orphan.url} (10 bytes)" in done.output
    assert doc.url in _urls(store)  # its snapshot refers to it


def test_gc_of_a_platform_without_tables_needs_force_and_creates_no_tables_file(
        tmp_path: Path) -> None:
    store = open_files()
    record = store.put("t/record", b"e" * 10)
    orphan = store.put("t/orphan", b"o" * 10)
    with millstream.open_streams() as streams:
        streams.admin().create_stream("events", 1)
        with streams.open_producer() as producer:
            producer.send("events", json.dumps({"f": record.model_dump()}).encode())
    home = tmp_path / "home"
    code, output = _gc()
    assert code == 1, output
    assert f"tables sqlite://{home}/tables.db does not exist" in output
    done = CliRunner().invoke(cli, ["files", "gc", "--older-than", "0s", "--force"])
    assert done.exit_code == 0, done.output
    assert "references from streams local: and no tables (none exist)" in done.output
    assert f"deleted {orphan.url} (10 bytes)" in done.output
    assert _urls(store) == {record.url}
    assert not (home / "tables.db").exists()
