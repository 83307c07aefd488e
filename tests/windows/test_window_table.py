"""The window table is an ordinary table: ``millstream tables query`` reads it, a snapshot
restores it, a replay of its changelog rebuilds it — each exactly as the live contents — and
a shadow version of the service keeps its own."""

from __future__ import annotations

import json
import random
from typing import Any

from click.testing import CliRunner, Result

import millstream
from millstream.cli.main import cli
from millstream.runtime import ServiceRunner
from millstream.service import Hopping, Sum, shadow_table
from millstream.tables import open_tables
from millstream.testing import TestPlatform
from tests.windows.apps import Click, clicks_app


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def traffic(n: int, seed: int) -> list[Click]:
    """``n`` clicks of 5 users, out of order, some late, some duplicated."""
    rng = random.Random(seed)
    out: list[Click] = []
    for i in range(n):
        click = Click(user=f"u{rng.randrange(5)}", at=i * 2 + rng.uniform(-40, 5),
                      amount=rng.randrange(10))
        out += [click] * (2 if rng.random() < 0.05 else 1)
    return out


def app_with_retention() -> Any:
    # retention short enough that windows expire (tombstones) during the run
    return clicks_app(window=Hopping(size=60, every=20), aggregate=Sum("amount"),
                      lateness=10, grace=5, retention=120)


def test_tables_query_snapshot_restore_and_rebuild_give_the_live_window_table() -> None:
    app = app_with_retention()
    sent = traffic(600, seed=1)
    with millstream.open_streams() as streams, open_tables() as tables:
        with app.open_writer(streams) as writer:
            for click in sent:
                writer.send("clicks", click, key=click.user)
        files = millstream.open_files()
        runner = ServiceRunner(app, "counts", streams, tables=tables, files=files)
        runner.run(until=lambda r: r.statistics().records_in >= len(sent))
        live = dict(tables.table("counts").scan(limit=None))
    assert 0 < len(live) < 300  # windows expired and were removed
    assert any(not row["closed"] for row in live.values())

    queried = [json.loads(line) for line in run(
        "tables", "query", "counts", "key=u3", "--limit", "1000").stdout.splitlines()]
    assert {q["key"]: q["value"] for q in queried} == {
        k: d for k, d in live.items() if d["key"] == "u3"}

    out = run("tables", "snapshot", "counts").stdout
    url = out.split("written to ")[1].split(" (sha256")[0]
    run("tables", "restore", "counts-copy", url)
    run("tables", "rebuild", "counts", "--into", "counts-replayed")
    with open_tables() as tables:
        assert dict(tables.table("counts-copy").scan(limit=None)) == live
        assert dict(tables.table("counts-replayed").scan(limit=None)) == live


def test_a_shadow_version_writes_its_own_window_table_with_the_same_contents() -> None:
    app = app_with_retention()
    sent = traffic(300, seed=2)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", sent, key=lambda c: c.user)
        platform.run_until_idle("counts")
        live = dict(platform.tables.table("counts").scan(limit=None))
        platform.run_until_idle("counts", shadow="v2")
        shadow = dict(platform.tables.table(shadow_table("counts", "v2")).scan(limit=None))
        assert shadow == live and live
        assert dict(platform.tables.table("counts").scan(limit=None)) == live


def test_on_postgresql_the_window_table_answers_sql(pg_url: str) -> None:
    app = app_with_retention()
    sent = traffic(400, seed=3)
    with millstream.open_streams() as streams, open_tables(pg_url) as tables:
        with app.open_writer(streams) as writer:
            for click in sent:
                writer.send("clicks", click, key=click.user)
        runner = ServiceRunner(app, "counts", streams, tables=tables,
                               files=millstream.open_files())
        runner.run(until=lambda r: r.statistics().records_in >= len(sent))
        live = dict(tables.table("counts").scan(limit=None))
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            """SELECT key, (doc->>'value')::int FROM "doc:counts"
               WHERE doc->>'key' = 'u2' AND NOT (doc->>'closed')::boolean ORDER BY key"""
        ).fetchall()
    assert rows == sorted((k, d["value"]) for k, d in live.items()
                          if d["key"] == "u2" and not d["closed"])
    assert rows
