"""Benchmark of windows and joins on the embedded log, each against a hand-written loop.

Run with ``make bench`` or ``.venv/bin/python bench/windows.py [--quick] [--rounds N]
[--records N]``. Two workloads, each run by a hand-written loop (A) and by millstream (C) in
one process, on the same pre-written input (4 partitions, 1,000 keys, the embedded log with
its default durability), in a rotating order, 3 rounds; figures are medians with the CPU
time per record beside each rate:

  window  a count per user over tumbling windows of 10 s of event time (the payload's
          ``at``, seconds; 200,000 events, 10 per user and window, then one more event per
          user that closes the last window): one result per user and window when it
          closes (20,000 results).
          A: ``poll(500)`` → ``Event.model_validate_json`` → counts in a dict per partition
          (window start → user → n) → a closed window's results JSON-encoded and sent with
          ``send_batch``; flush + commit every 200 ms. At-least-once, its state not durable.
          C: ``app.windowed(..., window=Tumbling(10), aggregate=Count(), time="at",
          emit="final", output=...)`` with its defaults — state checkpointed with its
          offsets every 5 s, one window-table row per user and window kept in SQLite.
  join    a stream–table join: each order (200,000) gets its item's title (1,000 items,
          written before the orders) — Kafka Streams' KStream–KTable join.
          A: read the items into a dict, then ``poll(500)`` → decode → look up →
          ``send_batch`` of the joined lines; flush + commit every 200 ms.
          C: ``app.join_table(...)`` with its defaults (the rows kept in the checkpointed
          shard state).

Both C variants are checked: the window results are compared with what the input must give
(each user and window once, 10 records), the join's line count with the orders.

Targets (issue 14): the windowed count ≥ 150,000 events/s per process, the stream–table join
≥ 100,000 records/s per process, on the embedded log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import millstream
from millstream.codecs import ModelCodec
from millstream.records import StreamPartition
from millstream.runtime import ServiceThreads, ensure_app_streams
from millstream.service import App, Count, Tumbling, WindowRow
from millstream.tables import open_tables

PARTITIONS = 4
USERS = 1_000
WINDOW_S = 10
STEP_S = WINDOW_S / 10 / USERS  # event i at i × STEP_S: 10 events per user and window
BASE_S = 1_733_480_000  # a multiple of WINDOW_S
ITEMS = 1_000
TARGET_WINDOW, TARGET_JOIN = 150_000, 100_000


class Event(BaseModel):
    id: int
    user: str
    action: str
    amount: float
    at: float


class Order(BaseModel):
    id: int
    item: str
    quantity: int


class Item(BaseModel):
    title: str
    price: float


class Line(BaseModel):
    order: int
    item: str
    title: str | None


def line(order: Order, item: Item | None) -> Line:
    return Line(order=order.id, item=order.item, title=item.title if item else None)


# -- input ---------------------------------------------------------------------------------------


def _write(streams: millstream.Streams, stream: str, codec: ModelCodec[Any],
           values: list[BaseModel], keys: list[bytes]) -> None:
    with streams.open_producer() as producer:
        for start in range(0, len(values), 1_000):
            chunk = values[start:start + 1_000]
            producer.send_batch(stream, [codec.encode(v)[0] for v in chunk],
                                keys=keys[start:start + 1_000],
                                headers=[codec.headers] * len(chunk))


def make_input(streams: millstream.Streams, n: int) -> None:
    admin = streams.admin()
    for name in ("events", "orders", "items"):
        admin.create_stream(name, PARTITIONS)
    users = [f"user-{u:04d}" for u in range(USERS)]
    events = [Event(id=i, user=users[i % USERS], action="play", amount=i % 1000 / 7,
                    at=BASE_S + i * STEP_S) for i in range(n + USERS)]
    _write(streams, "events", ModelCodec(Event), list(events),
           [e.user.encode() for e in events])
    items = [f"item-{i:04d}" for i in range(ITEMS)]
    _write(streams, "items", ModelCodec(Item),
           [Item(title=f"Item number {i}", price=i / 3) for i in range(ITEMS)],
           [k.encode() for k in items])
    orders = [Order(id=i, item=items[i * 7 % ITEMS], quantity=i % 5 + 1) for i in range(n)]
    _write(streams, "orders", ModelCodec(Order), list(orders),
           [o.item.encode() for o in orders])
    print(f"  input: {n + USERS:,} events ({USERS:,} users), {ITEMS:,} items, {n:,} orders "
          f"on {PARTITIONS} partitions")


def expected_windows(n: int) -> set[tuple[str, int]]:
    start_ms = BASE_S * 1000
    return {(f"user-{u:04d}", start_ms + w * WINDOW_S * 1000)
            for u in range(USERS) for w in range(n // (USERS * 10))}


# -- A: hand-written loops -----------------------------------------------------------------------


def _hand_loop(streams: millstream.Streams, group: str, inputs: list[str], n: int,
               handle: Callable[[Any], list[tuple[bytes, bytes]]], out: str) -> None:
    """poll → handle each record (→ (key, value) outputs) → send_batch; flush + commit
    every 200 ms; until ``n`` records are read."""
    seen = 0
    with streams.open_producer() as producer, streams.open_consumer(group) as consumer:
        consumer.subscribe(inputs)
        next_commit = time.monotonic() + 0.2
        done: dict[StreamPartition, int] = {}
        while seen < n:
            records = consumer.poll(max_records=500, timeout=0.1)
            if not records:
                continue
            keys: list[bytes | None] = []
            values: list[bytes | None] = []
            for record in records:
                for key, value in handle(record):
                    keys.append(key)
                    values.append(value)
                done[StreamPartition(record.stream, record.partition)] = record.offset + 1
            if values:
                producer.send_batch(out, values, keys=keys)
            seen += len(records)
            if time.monotonic() >= next_commit:
                producer.flush()
                consumer.commit(done)
                next_commit = time.monotonic() + 0.2
        producer.flush()
        consumer.commit(done)


def hand_window(streams: millstream.Streams, n: int, tag: str) -> float:
    out = f"out-a-{tag}"
    streams.admin().create_stream(out, PARTITIONS)
    validate = Event.model_validate_json
    size_ms = WINDOW_S * 1000
    open_: dict[int, dict[int, dict[str, int]]] = {p: {} for p in range(PARTITIONS)}
    latest: dict[int, int] = {p: -1 for p in range(PARTITIONS)}

    def handle(record: Any) -> list[tuple[bytes, bytes]]:
        event = validate(record.value)
        t = int(event.at * 1000)
        p = record.partition
        windows = open_[p]
        start = t - t % size_ms
        users = windows.get(start)
        if users is None:
            windows[start] = users = {}
        users[event.user] = users.get(event.user, 0) + 1
        if t <= latest[p]:
            return []
        latest[p] = t
        closed = [s for s in windows if s + size_ms <= t]
        return [(u.encode(), json.dumps({"key": u, "start": s, "end": s + size_ms,
                                         "value": c}).encode())
                for s in closed for u, c in windows.pop(s).items()]

    start = time.perf_counter()
    _hand_loop(streams, f"a-{tag}", ["events"], n + USERS, handle, out)
    elapsed = time.perf_counter() - start
    _check_windows(streams, out, n)
    return (n + USERS) / elapsed


def hand_join(streams: millstream.Streams, n: int, tag: str) -> float:
    out = f"out-a-{tag}"
    streams.admin().create_stream(out, PARTITIONS)
    validate_item, validate_order = Item.model_validate_json, Order.model_validate_json
    to_json = Line.__pydantic_serializer__.to_json
    start = time.perf_counter()
    rows: dict[bytes, Item] = {}
    with streams.open_consumer(f"a-items-{tag}") as consumer:  # the table side first
        consumer.subscribe(["items"])
        while len(rows) < ITEMS:
            for record in consumer.poll(max_records=500, timeout=0.1):
                rows[record.key or b""] = validate_item(record.value or b"")

    def handle(record: Any) -> list[tuple[bytes, bytes]]:
        order = validate_order(record.value)
        return [(record.key, to_json(line(order, rows.get(record.key))))]

    _hand_loop(streams, f"a-{tag}", ["orders"], n, handle, out)
    elapsed = time.perf_counter() - start
    _check_lines(streams, out, n)
    return (n + ITEMS) / elapsed


# -- C: millstream -------------------------------------------------------------------------------


def _run_app(app: App, streams: millstream.Streams, tables_url: str, total: int) -> float:
    """Run the app's one service in this process until it has read ``total`` records."""
    tables = open_tables(tables_url)
    threads = ServiceThreads(app, lambda: millstream.open_streams(streams.url), tables=tables)
    ensure_app_streams(app, streams)
    (runner,) = threads.runners
    start = time.perf_counter()
    try:
        with threads:
            while runner.metrics.records_in < total:
                threads.raise_error()
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
        threads.raise_error()
    finally:
        tables.close()
    return total / elapsed


def service_window(streams: millstream.Streams, n: int, tag: str, tables_url: str) -> float:
    app = App(f"bench-{tag}", partitions=PARTITIONS)
    events = app.stream("events", Event)
    out = app.stream(f"out-c-{tag}", WindowRow)
    app.windowed(f"count-{tag}", events, window=Tumbling(WINDOW_S), aggregate=Count(),
                 time="at", emit="final", output=out)
    rate = _run_app(app, streams, tables_url, n + USERS)
    _check_windows(streams, out.name, n)
    return rate


def service_join(streams: millstream.Streams, n: int, tag: str, tables_url: str) -> float:
    app = App(f"bench-{tag}", partitions=PARTITIONS)
    orders, items = app.stream("orders", Order), app.stream("items", Item)
    out = app.stream(f"out-c-{tag}", Line)
    app.join_table(f"titles-{tag}", orders, items, line, output=out)
    rate = _run_app(app, streams, tables_url, n + ITEMS)
    _check_lines(streams, out.name, n)
    return rate


# -- checks --------------------------------------------------------------------------------------


def _read_all(streams: millstream.Streams, stream: str) -> list[bytes]:
    got: list[bytes] = []
    info = streams.admin().describe_stream(stream)
    with streams.open_consumer(f"check-{stream}") as consumer:
        consumer.subscribe([stream])
        idle = 0
        while len(got) < info.records and idle < 50:
            records = consumer.poll(max_records=10_000, timeout=0.1)
            idle = 0 if records else idle + 1
            got.extend(r.value or b"" for r in records)
    return got


def _check_windows(streams: millstream.Streams, stream: str, n: int) -> None:
    results = [json.loads(v) for v in _read_all(streams, stream)]
    seen = {(r["key"], r["start"]) for r in results}
    wrong = [r for r in results if r["value"] != 10]
    if len(results) != len(seen) or seen != expected_windows(n) or wrong:
        raise SystemExit(f"{stream}: {len(results):,} results for {len(seen):,} windows, "
                         f"{len(expected_windows(n)):,} expected; wrong counts: {wrong[:3]}")


def _check_lines(streams: millstream.Streams, stream: str, n: int) -> None:
    lines = [json.loads(v) for v in _read_all(streams, stream)]
    untitled = [x for x in lines if x["title"] is None]
    if len(lines) != n or len({x["order"] for x in lines}) != n or untitled:
        raise SystemExit(f"{stream}: {len(lines):,} lines for {n:,} orders, "
                         f"{len(untitled):,} without a title")


# -- main ----------------------------------------------------------------------------------------


def _fresh(template: Path, into: Path) -> millstream.Streams:
    shutil.copytree(template, into)
    return millstream.open_streams(f"local:{into}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 records, one round")
    parser.add_argument("--records", type=int, help="events and orders (default 200,000; a "
                        "multiple of 10,000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--workloads", default="window,join")
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.quick else 200_000)
    if n % (USERS * 10):
        raise SystemExit(f"--records={n} must be a multiple of {USERS * 10:,} (whole windows)")
    rounds = args.rounds or (1 if args.quick else 3)
    workloads = [w for w in args.workloads.split(",") if w]
    print(f"windows benchmark: {n:,} records x {rounds} round(s); python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    runs: dict[str, Callable[..., float]] = {
        "window A": lambda s, t, _u: hand_window(s, n, t),
        "window C": lambda s, t, u: service_window(s, n, t, u),
        "join A": lambda s, t, _u: hand_join(s, n, t),
        "join C": lambda s, t, u: service_join(s, n, t, u)}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory(prefix="millstream-bench-win-") as tmp:
        template = Path(tmp) / "template"
        with millstream.open_streams(f"local:{template}") as streams:
            make_input(streams, n)
        for r in range(rounds):
            for workload in workloads:
                order = "AC" if r % 2 == 0 else "CA"
                for variant in order:
                    name = f"{workload} {variant}"
                    tag = f"{workload}{variant.lower()}{r}"
                    with _fresh(template, Path(tmp) / tag) as streams:
                        cpu = time.process_time()
                        rate = runs[name](streams, tag, f"sqlite:///{Path(tmp) / tag}/t.db")
                        cpu = time.process_time() - cpu
                    shutil.rmtree(Path(tmp) / tag)
                    total = n + (USERS if workload == "window" else ITEMS)
                    rates[name].append(rate)
                    cpus[name].append(cpu / total * 1e6)
                    print(f"  round {r + 1} {name}: {rate:>9,.0f} records/s  "
                          f"{cpu / total * 1e6:5.1f} µs CPU/record", flush=True)
    print("\n  medians")
    for workload, target in (("window", TARGET_WINDOW), ("join", TARGET_JOIN)):
        if workload not in workloads:
            continue
        a, c = (statistics.median(rates[f"{workload} {v}"]) for v in "AC")
        ca, cc = (statistics.median(cpus[f"{workload} {v}"]) for v in "AC")
        verdict = "PASS" if c >= target else "MISS"
        print(f"    {workload}: hand-written {a:,.0f} rec/s ({ca:.1f} µs CPU), millstream "
              f"{c:,.0f} rec/s ({cc:.1f} µs CPU); C/A {c / a:.2f}, CPU A/C {ca / cc:.2f}; "
              f"target ≥ {target:,}: {verdict}")
    print("  load after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
