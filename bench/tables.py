"""Benchmark of tables: materializing a stream into SQLite, against plain sqlite3, and a rebuild.

Run with ``.venv/bin/python bench/tables.py [--quick] [--rounds N] [--postgres URL]``.

1. Materialize: a stream of JSON documents (~110 bytes, 4 partitions, keys drawn from
   ``records / 2`` so half are updates, 5 % tombstones) on the embedded log is materialized
   into a fresh SQLite table by ``Materializer.catch_up()`` — poll, check each value is a JSON
   object, upsert/delete in batches of 20,000 with the offsets in the same transaction.
   Baseline, in the same round: plain ``sqlite3`` ``executemany`` of the same (key, JSON)
   pairs, already in memory, into ``(key TEXT PRIMARY KEY, doc TEXT) WITHOUT ROWID`` with the
   same pragmas (WAL, synchronous=NORMAL, 64 MB cache, checkpoint every 10,000 pages) and
   one transaction per 20,000 rows — the database's
   own cost, with no stream reading and no checking. Target: ≥ 50,000 documents/s.
   Figures are medians over rounds.
2. Rebuild: ``rebuild()`` of a table from a stream of 1,000,000 documents (distinct keys) with
   a progress bar, timed end to end.

With ``--postgres URL`` the materialize workload also runs into PostgreSQL (JSONB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import millstream
from millstream.tables import open_tables
from millstream.tables._materialize import Materializer, rebuild

PARTITIONS = 4
BATCH = 20_000  # records per transaction, the materializer's default
TARGET = 50_000
STATUS = ("new", "paid", "shipped", "cancelled")


def make_feed(streams: millstream.Streams, stream: str, n: int, *, distinct: bool,
              seed: int = 7) -> list[tuple[bytes, bytes | None]]:
    rng = random.Random(seed)
    streams.admin().create_stream(stream, PARTITIONS)
    pairs: list[tuple[bytes, bytes | None]] = []
    space = n if distinct else max(n // 2, 1)
    for i in range(n):
        k = i if distinct else rng.randrange(space)
        key = f"doc-{k:08d}".encode()
        if not distinct and rng.random() < 0.05:
            pairs.append((key, None))
            continue
        doc = {"id": f"doc-{k:08d}", "user": f"u{rng.randrange(10_000)}",
               "amount": round(rng.random() * 500, 2), "status": rng.choice(STATUS),
               "tags": ["a", "b"], "n": i}
        pairs.append((key, json.dumps(doc, separators=(",", ":")).encode()))
    with streams.open_producer() as producer:
        for lo in range(0, n, 10_000):
            chunk = pairs[lo:lo + 10_000]
            producer.send_batch(stream, [v for _, v in chunk], keys=[k for k, _ in chunk])
        producer.flush(120)
    return pairs


def baseline(path: Path, pairs: list[tuple[bytes, bytes | None]]) -> float:
    """Plain sqlite3: the same documents, already decoded, upserted/deleted per 20,000."""
    rows = [(k.decode(), v.decode() if v is not None else None) for k, v in pairs]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    conn.execute("CREATE TABLE docs (key TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")
    start = time.perf_counter()
    for lo in range(0, len(rows), BATCH):
        chunk = rows[lo:lo + BATCH]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?)",
                         [r for r in chunk if r[1] is not None])
        conn.executemany("DELETE FROM docs WHERE key=?", [(r[0],) for r in chunk if r[1] is None])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def materialize(streams: millstream.Streams, tables_url: str, stream: str, n: int,
                indexes: tuple[str, ...] = ()) -> tuple[float, int]:
    with open_tables(tables_url) as tables:
        start = time.perf_counter()
        with Materializer(streams, tables, "docs", stream, batch_size=BATCH,
                          indexes=indexes) as m:
            stats = m.catch_up()
        elapsed = time.perf_counter() - start
        count = tables.table("docs").count()
    assert stats.records == n, (stats.records, n)
    return n / elapsed, count


def drop(url: str) -> None:
    with open_tables(url) as tables:
        if "docs" in tables.list_tables():
            tables.drop_table("docs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100,000 documents to materialize, 200,000 to rebuild, one round")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rebuild-records", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--postgres", metavar="URL", help="also materialize into PostgreSQL")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    n = args.records or (100_000 if args.quick else 300_000)
    n_rebuild = args.rebuild_records or (200_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    out = Console(stderr=True)
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"load {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {"records": n, "rebuild_records": n_rebuild, "rounds": rounds}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="millstream-bench-tables-") as tmp:
        root = Path(tmp)
        with millstream.open_streams(f"local:{root / 'log'}") as streams:
            print(f"writing {n:,} documents to the feed stream …")
            pairs = make_feed(streams, "feed", n, distinct=False)
            base, mine, indexed, pg = [], [], [], []
            for r in range(rounds):
                base.append(baseline(root / f"baseline{r}.db", pairs))
                url = "sqlite:///" + str(root / f"tables{r}.db").lstrip("/")
                rate, count = materialize(streams, url, "feed", n)
                mine.append(rate)
                url = "sqlite:///" + str(root / f"indexed{r}.db").lstrip("/")
                indexed.append(materialize(streams, url, "feed", n, ("status",))[0])
                if args.postgres:
                    drop(args.postgres)
                    pg.append(materialize(streams, args.postgres, "feed", n)[0])
                print(f"round {r + 1}: baseline {base[-1]:,.0f}/s, materializer "
                      f"{mine[-1]:,.0f}/s, with an index {indexed[-1]:,.0f}/s"
                      + (f", PostgreSQL {pg[-1]:,.0f}/s" if pg else "")
                      + f" ({count:,} documents in the table)")
            b, m = statistics.median(base), statistics.median(mine)
            verdict = "PASS" if m >= TARGET else "MISS"
            print(f"\nmaterialize into SQLite: {m:,.0f} documents/s (target ≥ {TARGET:,}: "
                  f"{verdict}); plain sqlite3 executemany {b:,.0f}/s; ratio {m / b:.2f}")
            print(f"  with an index on one field: {statistics.median(indexed):,.0f}/s")
            if pg:
                print(f"  into PostgreSQL: {statistics.median(pg):,.0f}/s")
            results.update(baseline=b, materialize=m, ratio=m / b,
                           indexed=statistics.median(indexed),
                           postgres=statistics.median(pg) if pg else None,
                           per_round={"baseline": base, "materialize": mine,
                                      "indexed": indexed, "postgres": pg})

            print(f"\nwriting {n_rebuild:,} distinct documents for the rebuild …")
            make_feed(streams, "big", n_rebuild, distinct=True, seed=11)
            url = "sqlite:///" + str(root / "rebuild.db").lstrip("/")
            with open_tables(url) as tables:
                tables.create_table("big")
                with tables.table("big").transaction() as tx:
                    tx.set_feed("big")
                bar = Progress(TextColumn("rebuild big"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), console=out)
                task = bar.add_task("rebuild", total=None)
                start = time.perf_counter()
                with bar:
                    stats = rebuild(streams, tables, "big", progress=lambda d, t: bar.update(
                        task, completed=d, total=t))
                elapsed = time.perf_counter() - start
                assert tables.table("big").count() == n_rebuild
            print(f"rebuild of {stats.records:,} documents: {elapsed:.1f} s "
                  f"({stats.records / elapsed:,.0f} documents/s)")
            results.update(rebuild_seconds=elapsed, rebuild_rate=stats.records / elapsed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
