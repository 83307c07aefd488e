"""``millstream tables``: list, get, scan, query, snapshot, restore and rebuild, run in-process
against this test's MILLSTREAM_HOME (embedded log, SQLite tables, file:// store)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import millstream
from millstream import Retention, Streams
from millstream.cli.main import cli
from millstream.cli.tables import tables_group
from millstream.tables import open_tables
from millstream.tables._materialize import Materializer
from tests.tables.helpers import produce_feed, replay

if "tables" not in cli.commands:  # until cli/main.py registers the group
    cli.add_command(tables_group)


def run(*args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, f"{result.exit_code}: {result.output}"
    if code == 1:
        assert "Traceback" not in result.output
    return result


@pytest.fixture
def streams() -> Iterator[Streams]:
    with millstream.open_streams() as handle:
        handle.admin().create_stream("orders", partitions=2, retention=Retention(compact=True))
        produce_feed(handle, "orders", 1500, keys=200)
        with open_tables() as tables, \
                Materializer(handle, tables, "orders", "orders", indexes=["colour"]) as m:
            m.catch_up()
        yield handle


def lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_list_get_scan_query(streams: Streams) -> None:
    expected = replay(streams, "orders")
    out = run("tables", "list").stdout
    assert "orders" in out and "colour" in out and str(len(expected)) in out
    assert out.split("orders")[-1].split()[-1] == "0"  # not behind
    key = sorted(expected)[0]
    assert json.loads(run("tables", "get", "orders", key).stdout) == expected[key]
    err = run("tables", "get", "orders", "nope", code=1).stderr
    assert "no document at key 'nope'" in err
    scanned = lines(run("tables", "scan", "orders", "k000", "--limit", "3"))
    assert [r["key"] for r in scanned] == sorted(k for k in expected if k.startswith("k000"))[:3]
    reds = lines(run("tables", "query", "orders", "colour=red", "--limit", "1000"))
    assert {r["key"] for r in reds} == {k for k, d in expected.items() if d["colour"] == "red"}
    n = expected[key]["n"]
    assert [r["key"] for r in lines(run("tables", "query", "orders", f"n={n}"))] == [key]
    assert lines(run("tables", "query", "orders", f'n="{n}"')) == []
    assert "no tables" not in run("tables", "list").stderr
    assert "does not exist" in run("tables", "get", "missing", "k", code=1).stderr


def test_snapshot_restore_rebuild(streams: Streams) -> None:
    expected = replay(streams, "orders")
    out = run("tables", "snapshot", "orders").stdout
    assert f"{len(expected)} document(s)" in out and "sha256" in out
    produce_feed(streams, "orders", 300, keys=200, seed=4, start=1500)
    url = out.split("written to ")[1].split(" (sha256")[0]
    assert "no snapshot of table 'orders-copy'" in run(
        "tables", "restore", "orders-copy", code=1).stderr  # its own latest: none
    assert "orders-copy" in run("tables", "restore", "orders-copy", url).stdout
    with open_tables() as tables:
        assert dict(tables.table("orders-copy").scan(limit=None)) == expected
    with open_tables() as tables:
        tables.table("orders").put("stray", {"x": 1})
    restored = run("tables", "restore", "orders", "--yes").stdout
    assert f"{len(expected)} document(s)" in restored
    with open_tables() as tables:
        assert dict(tables.table("orders").scan(limit=None)) == expected

    out = run("tables", "rebuild", "orders", "--into", "orders-v2").stdout
    assert "rebuilt 'orders-v2'" in out
    out = run("tables", "rebuild", "orders", "--yes").stdout
    assert "rebuilt 'orders'" in out
    with open_tables() as tables:
        now = replay(streams, "orders")
        assert dict(tables.table("orders").scan(limit=None)) == now
        assert dict(tables.table("orders-v2").scan(limit=None)) == now
    run("tables", "rebuild", "orders", code=1, input="n\n")  # declined: aborts


def test_snapshot_prints_the_sha256_that_files_ls_and_stat_show(streams: Streams,
                                                                _isolated_home: Path) -> None:
    out = run("tables", "snapshot", "orders").stdout
    url, printed = out.rstrip().removesuffix(")").split("written to ")[1].split(" (sha256 ")
    name = url.removeprefix((_isolated_home / "files").absolute().as_uri() + "/")
    assert name.startswith("tables/orders/snapshots/") and name.endswith(".jsonl.gz")
    (row,) = [line.split() for line in run("files", "ls", "tables/orders/").stdout.splitlines()
              if line.startswith("tables/")]
    stat = dict(line.split(None, 1) for line in run("files", "stat", name).stdout.splitlines())
    stored = hashlib.sha256((_isolated_home / "files" / name).read_bytes()).hexdigest()
    assert row[0] == name
    assert printed == row[2] == stat["sha256"] == stored
