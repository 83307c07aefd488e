"""On PostgreSQL the window table is a table SQL can read: one JSONB document per key and
window, in the table ``"doc:<name>"`` (columns ``key`` and ``doc``), fed by the running
service — the same rows ``millstream tables`` and ``current(tables, key)`` give."""

from __future__ import annotations

import psycopg

import millstream
from millstream.runtime import ServiceRunner
from millstream.service import Sum, Tumbling
from millstream.tables import open_tables
from tests.windows.apps import Click, clicks_app

BASE = 28_333_333 * 60  # seconds since the epoch (Nov 2023), at the start of a minute


def test_the_window_table_on_postgresql_answers_sql(pg_url: str, tmp_path: object) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Sum("amount"), idle_timeout=None,
                     partitions=1)  # one watermark for both users
    sent = [Click(user="ada", at=BASE + 1, amount=3), Click(user="bob", at=BASE + 2, amount=5),
            Click(user="ada", at=BASE + 59, amount=4),  # same window as the first
            Click(user="ada", at=BASE + 61, amount=7),  # the next window: closes the first
            Click(user="bob", at=BASE + 125, amount=1)]  # closes ada's second and bob's first
    with millstream.open_streams(f"local:{tmp_path}") as streams, \
            open_tables(pg_url) as tables:
        with app.open_writer(streams) as writer:
            for click in sent:
                writer.send("clicks", click, key=click.user)
        runner = ServiceRunner(app, "counts", streams, tables=tables)
        runner.run(until=lambda r: r.statistics().records_in >= len(sent))

    start = BASE * 1000
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            """SELECT doc->>'key', (doc->>'start')::bigint - %s, (doc->>'value')::int,
                      (doc->>'records')::int, (doc->>'closed')::boolean
               FROM "doc:counts" ORDER BY doc->>'key', (doc->>'start')::bigint""",
            (start,)).fetchall()
        assert rows == [("ada", 0, 7, 2, True), ("ada", 60_000, 7, 1, True),
                        ("bob", 0, 5, 1, True), ("bob", 120_000, 1, 1, False)]
        # a question a dashboard asks: each user's views in windows that have closed
        totals = conn.execute(
            """SELECT doc->>'key', sum((doc->>'value')::int) FROM "doc:counts"
               WHERE (doc->>'closed')::boolean GROUP BY 1 ORDER BY 1""").fetchall()
        assert totals == [("ada", 14), ("bob", 5)]
