"""Benchmark of a table as a declared output, against the per-record pattern it replaces.

Run with ``.venv/bin/python bench/table_outputs.py [--quick] [--rounds N]
[--kafka HOST:PORT] [--postgres URL]``: the embedded default (the local log and SQLite
tables) always, and Kafka + PostgreSQL when both are given.

The work: documents (~110 bytes of JSON, 4 partitions, keys drawn from ``records / 2`` so
half are updates) are in an input stream; a service reads each, validates it into a pydantic
model and writes it to a table. Timed from the service's start until the table holds every
document and reflects its stream to the end — documents/s into the table.

  new  ``outputs=[app.table("docs", Doc, key="id", indexes=["status"])]``: the runtime sends
       the rows to the table's stream and applies them in batches after each commit;
  feed materialization only: the changelog already written (as the runtime writes it: each
       row a ``Doc`` in its codec, keyed by its id), the runtime's table feed applies it
       into an empty table — what the target literally names, without the service's own
       work (decoding its input, encoding and sending the rows);
  old  what the video site did before: a service copies each document to a stream and a
       second service, fed by it, calls ``Materializer.catch_up()`` for every record (run
       side by side in threads, as ``millstream up`` would); measured on ``--old-records``
       documents, as it is far slower.

All run in every round, in alternating order, each on input streams and a table of its
own (on the embedded default, in a fresh log and tables file); figures are medians over
rounds, with the CPU time this process spent per document (the broker's and PostgreSQL's
are not in it). ``--metrics-interval`` sets how often the services write metrics records
(5 s, as shipped); ``--commit-interval`` the table-output service's commit interval (0.2
s, as shipped), after each of which its table is fed. Targets: ≥ 50,000 documents/s on the
embedded default, ≥ 20,000 on Kafka + PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import millstream
from millstream import StreamPartition
from millstream.codecs import ModelCodec
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from millstream.tables import Materializer, Tables, open_tables
from millstream.tables._feed import TableFeed  # what the runtime feeds a table output with

PARTITIONS = 4
STATUS = ("new", "paid", "shipped", "cancelled")
TARGETS = {"embedded": 50_000, "kafka+postgres": 20_000}


class Doc(BaseModel):
    id: str
    user: str
    amount: float
    status: str
    tags: list[str]
    n: int


def make_docs(n: int, seed: int = 7) -> list[Doc]:
    rng = random.Random(seed)
    space = max(n // 2, 1)
    return [Doc(id=f"doc-{rng.randrange(space):08d}", user=f"u{rng.randrange(10_000)}",
                amount=round(rng.random() * 500, 2), status=rng.choice(STATUS),
                tags=["a", "b"], n=i) for i in range(n)]


def fill(streams: millstream.Streams, stream: str, docs: list[Doc]) -> None:
    streams.admin().create_stream(stream, PARTITIONS)
    codec = ModelCodec(Doc)
    with streams.open_producer() as producer:
        for lo in range(0, len(docs), 10_000):
            chunk = docs[lo:lo + 10_000]
            encoded = [codec.encode(d) for d in chunk]
            producer.send_batch(stream, [v for v, _ in encoded],
                                keys=[d.id.encode() for d in chunk],
                                headers=[h for _, h in encoded])
        producer.flush(120)


def caught_up(streams: millstream.Streams, tables: Tables, table: str, stream: str) -> bool:
    ends = {StreamPartition(stream, p.partition): p.end
            for p in streams.admin().describe_stream(stream).partitions}
    try:
        return tables.table(table).offsets() == ends and sum(ends.values()) > 0
    except millstream.NotFoundError:
        return False


def run_services(runners: list[ServiceRunner], done: Any) -> float:
    """Run the runners in threads until ``done()``; seconds from start to done."""
    for r in runners:
        r.prepare()
    start = time.perf_counter()
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for t in threads:
        t.start()
    try:
        while not done():
            for t in threads:
                if not t.is_alive():
                    raise RuntimeError("a service stopped early; see its log")
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    finally:
        for r in runners:
            r.stop()
        for t in threads:
            t.join(60)
    return elapsed


def new_way(streams: millstream.Streams, tables: Tables, source: str, tag: str, n: int,
            metrics_s: float, commit_s: float = 0.2) -> float:
    app = App(f"new{tag}", partitions=PARTITIONS)
    app.stream(source, Doc)
    docs = app.table(f"docs-new-{tag}", Doc, key="id", indexes=["status"])

    @app.service(inputs=[source], outputs=[docs], commit_interval=commit_s)
    def index(doc: Doc) -> Doc:
        return doc

    runner = ServiceRunner(app, "index", streams, tables=tables, metrics_interval_s=metrics_s)
    elapsed = run_services([runner], lambda: runner.metrics.records_in >= n and caught_up(
        streams, tables, docs.name, docs.stream))
    assert runner.metrics.records_in == n, runner.metrics.records_in
    return n / elapsed


def feed_only(streams: millstream.Streams, tables: Tables, source: str, tag: str, n: int
              ) -> float:
    """``source`` is the changelog (``fill`` writes what the runtime would): apply it all."""
    with TableFeed(streams, tables, f"docs-feed-{tag}", source, model=Doc,
                   indexes=["status"]) as feed:
        start = time.perf_counter()
        applied = feed.apply(600)
        elapsed = time.perf_counter() - start
    assert applied == n and caught_up(streams, tables, f"docs-feed-{tag}", source), applied
    return n / elapsed


def old_way(streams: millstream.Streams, tables: Tables, source: str, tag: str, n: int,
            metrics_s: float) -> float:
    app = App(f"old{tag}", partitions=PARTITIONS)
    app.stream(source, Doc)
    copied, table = f"copied-{tag}", f"docs-old-{tag}"

    @app.service(inputs={source: Doc}, outputs={copied: Doc})
    def copy(doc: Doc) -> Doc:
        return doc

    def feeder(ctx: Context) -> Materializer:  # the Materializer is its own context manager
        return Materializer(ctx.streams, ctx.tables.backend, ctx.tables.name(table), copied,
                            model=Doc, indexes=["status"])

    @app.service(inputs={copied: Doc}, lifespan=feeder)
    def catalog(doc: Doc, ctx: Context, feed: Materializer) -> None:
        feed.catch_up()

    runners = [ServiceRunner(app, name, streams, tables=tables, metrics_interval_s=metrics_s)
               for name in ("copy", "catalog")]
    elapsed = run_services(runners, lambda: runners[1].metrics.records_in >= n and caught_up(
        streams, tables, table, copied))
    return n / elapsed


#: opens the streams and tables one run uses, given the run's tag
Opener = Callable[[str], AbstractContextManager[tuple[millstream.Streams, Tables]]]


def platform_round(label: str, opener: Opener, n: int, n_old: int, rounds: int,
                   metrics_s: float, commit_s: float = 0.2) -> dict[str, Any]:
    """Every run writes its own input to streams of its own (on the embedded default, in a
    fresh log and tables file: no run pays for another's database growth)."""
    run = uuid.uuid4().hex[:6]
    docs, docs_old = make_docs(n), make_docs(n_old)
    new: list[float] = []
    old: list[float] = []
    feed: list[float] = []
    cpu: dict[str, list[float]] = {"new": [], "old": [], "feed": []}
    print(f"\n{label}: {n:,} documents per table-output and materialization-only run, "
          f"{n_old:,} per per-record run; commit_interval {commit_s} s, metrics every "
          f"{metrics_s} s")
    for r in range(rounds):
        order = ("new", "feed", "old") if r % 2 == 0 else ("old", "feed", "new")
        for variant in order:
            tag = f"{run}{r}{variant}"
            with opener(tag) as (streams, tables):
                source = f"bench-in-{tag}"
                fill(streams, source, docs_old if variant == "old" else docs)
                started = time.process_time()
                if variant == "new":
                    new.append(new_way(streams, tables, source, tag, n, metrics_s, commit_s))
                    rate, count = new[-1], n
                elif variant == "feed":
                    feed.append(feed_only(streams, tables, source, tag, n))
                    rate, count = feed[-1], n
                else:
                    old.append(old_way(streams, tables, source, tag, n_old, metrics_s))
                    rate, count = old[-1], n_old
                cpu[variant].append((time.process_time() - started) / count * 1e6)
            print(f"  round {r + 1} {variant}: {rate:>9,.0f} documents/s  "
                  f"{cpu[variant][-1]:7.1f} µs CPU/document (this process)", flush=True)
    m_new, m_old = statistics.median(new), statistics.median(old)
    target = TARGETS[label]
    c_new, c_old = statistics.median(cpu["new"]), statistics.median(cpu["old"])
    print(f"  medians: table output {m_new:,.0f} documents/s, {c_new:.1f} µs CPU/document "
          f"(target ≥ {target:,}/s: {'PASS' if m_new >= target else 'MISS'}); per-record "
          f"catch-up {m_old:,.0f} documents/s, {c_old:.1f} µs CPU/document; ratio "
          f"{m_new / m_old:,.0f}×")
    m_feed, c_feed = statistics.median(feed), statistics.median(cpu["feed"])
    print(f"  materialization only (the changelog already written): {m_feed:,.0f} documents/s, "
          f"{c_feed:.1f} µs CPU/document (target ≥ {target:,}/s: "
          f"{'PASS' if m_feed >= target else 'MISS'})")
    return {"new": new, "old": old, "feed": feed, "median_new": m_new, "median_old": m_old,
            "median_feed": m_feed,
            "cpu_us": cpu, "records": n, "old_records": n_old, "metrics_s": metrics_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 documents, one round")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--old-records", type=int, default=None,
                        help="documents for the per-record pattern (default 2,000)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--kafka", metavar="HOST:PORT", help="also run on Kafka ...")
    parser.add_argument("--postgres", metavar="URL", help="... with PostgreSQL tables")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--metrics-interval", type=float, default=5.0,
                        help="seconds between the services' metrics records (5.0, as shipped)")
    parser.add_argument("--commit-interval", type=float, default=0.2,
                        help="the table-output service's commit_interval, after each of "
                             "which its table is fed (0.2 s, as shipped)")
    parser.add_argument("--no-embedded", action="store_true",
                        help="skip the embedded default (with --kafka and --postgres)")
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.quick else 200_000)
    n_old = args.old_records or 2_000
    rounds = args.rounds or (1 if args.quick else 3)
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    results: dict[str, Any] = {}
    metrics_s = args.metrics_interval
    with tempfile.TemporaryDirectory(prefix="millstream-bench-tableout-") as tmp:
        root = Path(tmp)

        @contextmanager
        def embedded(tag: str) -> Iterator[tuple[millstream.Streams, Tables]]:
            home = root / tag
            with millstream.open_streams(f"local:{home / 'log'}") as streams, \
                    open_tables("sqlite:///" + str(home / "tables.db").lstrip("/")) as tables:
                yield streams, tables
            shutil.rmtree(home)

        if not args.no_embedded:
            results["embedded"] = platform_round("embedded", embedded, n, n_old, rounds,
                                                 metrics_s, args.commit_interval)
    if args.kafka and args.postgres:
        kafka, postgres = args.kafka, args.postgres

        @contextmanager
        def distributed(tag: str) -> Iterator[tuple[millstream.Streams, Tables]]:
            with millstream.open_streams(f"kafka://{kafka}") as streams, \
                    open_tables(postgres) as tables:
                yield streams, tables

        results["kafka+postgres"] = platform_round("kafka+postgres", distributed, n, n_old,
                                                   rounds, metrics_s, args.commit_interval)
    elif args.kafka or args.postgres:
        print("\nkafka+postgres: skipped (give both --kafka and --postgres)")
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
