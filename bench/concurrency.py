"""Benchmark of async handlers: a handler that waits 10 ms on I/O per record, written
``async def`` with ``concurrency=64`` against the same handler written synchronously.

Run with ``.venv/bin/python bench/concurrency.py [--kafka HOST:PORT] [--rounds N]``
(``MILLSTREAM_KAFKA_BOOTSTRAP`` works too; without either, the embedded log only).

  async: ``async def f(e): await asyncio.sleep(0.01); return e`` with ``concurrency=64``;
  sync:  ``def f(e): time.sleep(0.01); return e`` (one record at a time).

Both read ~100-byte JSON records (a pydantic model, 4 partitions, keys over 977 users) and
write them to an output stream at-least-once, as a service runs under ``millstream run``
(metrics on). Each variant reads its own fresh input stream with a fresh group; the rate is
taken from the first record handled to the last (the group join is not counted). Rounds
alternate the order of the variants; figures are medians over rounds, with the CPU time per
record and the machine's load (``os.getloadavg``) printed beside them. Targets: async ≥ 0.8 ×
6,400 = 5,120 records/s per process, and ≥ 10 × sync, on each backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from pydantic import BaseModel

import millstream
from millstream.codecs import ModelCodec
from millstream.runtime import ServiceRunner
from millstream.service import App

PARTITIONS = 4
CONCURRENCY = 64
WAIT_S = 0.010
TARGET_RATE = 0.8 * CONCURRENCY / WAIT_S  # 5,120 records/s
TARGET_RATIO = 10.0


class Event(BaseModel):
    id: int
    user: str
    action: str
    amount: float


def make_input(streams: millstream.Streams, stream: str, n: int) -> None:
    streams.admin().create_stream(stream, PARTITIONS)
    codec = ModelCodec(Event)
    with streams.open_producer() as producer:
        values, keys, headers = [], [], []
        for i in range(n):
            value, h = codec.encode(Event(id=i, user=f"user-{i % 977:05d}",
                                          action="purchase-item", amount=i % 1000 / 7))
            values.append(value)
            keys.append(f"user-{i % 977:05d}".encode())
            headers.append(h)
        producer.send_batch(stream, values, keys=keys, headers=headers)
        producer.flush()


def declare(variant: str, tag: str, marks: dict[str, float]) -> App:
    """The service; its first record marks the start (wall and CPU time) in ``marks``."""
    app = App(f"bench-{tag}", partitions=PARTITIONS)
    inputs, outputs = {f"in-{tag}": Event}, {f"out-{tag}": Event}

    def first() -> None:
        if not marks:
            marks.update(t0=time.perf_counter(), c0=time.process_time())

    if variant == "async":
        @app.service("wait", inputs=inputs, outputs=outputs, concurrency=CONCURRENCY)
        async def wait_async(event: Event) -> Event:
            first()
            await asyncio.sleep(WAIT_S)
            return event
    else:
        @app.service("wait", inputs=inputs, outputs=outputs)
        def wait_sync(event: Event) -> Event:
            first()
            time.sleep(WAIT_S)
            return event
    return app


def run_variant(url: str, variant: str, n: int) -> tuple[float, float]:
    """(records/s, CPU µs per record) from the first record handled to the last."""
    tag = uuid.uuid4().hex[:8]
    marks: dict[str, float] = {}
    app = declare(variant, tag, marks)
    with millstream.open_streams(url) as streams:
        make_input(streams, f"in-{tag}", n)
        runner = ServiceRunner(app, "wait", streams, metrics_interval_s=5.0)
        end: dict[str, float] = {}

        def until(r: ServiceRunner) -> bool:
            if r.metrics.records_in >= n:
                end.update(t1=time.perf_counter(), c1=time.process_time())
                return True
            return False

        runner.run(until=until)
        admin = streams.admin()
        for stream in (f"in-{tag}", f"out-{tag}"):
            try:
                admin.delete_stream(stream)
            except Exception as exc:  # a leftover stream costs nothing but disk
                print(f"  (could not delete {stream}: {exc})")
    seconds = end["t1"] - marks["t0"]
    return n / seconds, (end["c1"] - marks["c0"]) / n * 1e6


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench(name: str, url: str, rounds: int, counts: dict[str, int]) -> dict[str, float]:
    print(f"\n{name}: {url}")
    rates: dict[str, list[float]] = {"async": [], "sync": []}
    cpu: dict[str, list[float]] = {"async": [], "sync": []}
    ratios: list[float] = []
    for r in range(rounds):
        order = ["async", "sync"] if r % 2 == 0 else ["sync", "async"]
        got: dict[str, float] = {}
        for variant in order:
            rate, us = run_variant(url, variant, counts[variant])
            got[variant] = rate
            rates[variant].append(rate)
            cpu[variant].append(us)
            print(f"  round {r + 1} {variant:5s}: {rate:9,.0f} records/s  {us:7.1f} µs CPU/"
                  f"record  ({counts[variant]:,} records; {load()})")
        ratios.append(got["async"] / got["sync"])
    med = {v: statistics.median(rates[v]) for v in rates}
    ratio = statistics.median(ratios)
    print(f"  median: async {med['async']:,.0f} records/s ({statistics.median(cpu['async']):.1f}"
          f" µs CPU/record), sync {med['sync']:,.0f} ({statistics.median(cpu['sync']):.1f} µs)"
          f"; async/sync {ratio:.1f}×")
    ok_rate = med["async"] >= TARGET_RATE
    ok_ratio = ratio >= TARGET_RATIO
    print(f"  target async ≥ {TARGET_RATE:,.0f}/s: {'met' if ok_rate else 'MISSED'}; "
          f"async ≥ {TARGET_RATIO:.0f}× sync: {'met' if ok_ratio else 'MISSED'}")
    return {"async": med["async"], "sync": med["sync"], "ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--kafka", default=os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP"),
                        help="bootstrap HOST:PORT of a Kafka broker (else embedded log only)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=30_000,
                        help="records per async run (the sync runs get 1/100 as many, ≥ 200)")
    args = parser.parse_args(argv)
    counts = {"async": args.records, "sync": max(200, args.records // 100)}
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {load()}")
    print(f"handler waits {WAIT_S * 1000:.0f} ms per record; async concurrency={CONCURRENCY}")
    runs: list[tuple[str, Callable[[], dict[str, float]]]] = []
    with tempfile.TemporaryDirectory(prefix="millstream-bench-conc-") as home:
        runs.append(("embedded log", lambda: bench("embedded log", f"local:{home}",
                                                     args.rounds, counts)))
        if args.kafka:
            runs.append(("Kafka", lambda: bench("Kafka", f"kafka://{args.kafka}",
                                                args.rounds, counts)))
        results = {name: run() for name, run in runs}
    print(f"\nsummary ({load()}):")
    for name, r in results.items():
        print(f"  {name:12s} async {r['async']:8,.0f}/s  sync {r['sync']:6,.0f}/s  "
              f"{r['ratio']:5.1f}×")


if __name__ == "__main__":
    main()
