"""Benchmark of the service runtime: a pass-through service against a hand-written loop.

Run with ``make bench`` or ``.venv/bin/python bench/services.py [--quick] [--rounds N]``.

All three variants read the same pre-written input (100-byte JSON records, 4 partitions) on
the embedded log with its default durability, decode each record into a pydantic model,
return it from the handler, encode it, send the outputs with ``send_batch`` per poll and commit
(flush first) every 200 ms — at-least-once, the same work:

  A. hand-written: ``poll(500)`` → ``Model.model_validate_json`` → the same function →
     ``__pydantic_serializer__.to_json`` → ``send_batch(values, keys, headers)`` with the
     same headers the runtime writes (content type, schema name and version);
  B. the service runtime with the universal microarchitecture switched off (``plumbing=False``:
     no per-record timing, no metrics records) — what the runtime itself costs;
  C. the service runtime as users run it (metrics, histogram, exception plumbing).

Each round runs A, B and C in a rotating order on fresh groups and output streams; figures are
medians over rounds. Reported: C's records/s (target ≥ 100,000 per process), C / A (the
runtime's overhead against a hand-written loop) and C / B (the microarchitecture's cost;
target ≥ 0.95 — at most 5 %).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

import millstream
from millstream.codecs import ModelCodec
from millstream.records import StreamPartition
from millstream.service import App, ServiceRunner

PARTITIONS = 4
TARGET_RATE = 100_000
TARGET_PLUMBING = 0.95


class Event(BaseModel):
    id: int
    user: str
    action: str
    amount: float


def make_input(streams: millstream.Streams, n: int) -> None:
    streams.admin().create_stream("events", PARTITIONS)
    codec = ModelCodec(Event)
    with streams.open_producer() as producer:
        values, keys, headers = [], [], []
        for i in range(n):
            value, h = codec.encode(Event(id=i, user=f"user-{i % 977:05d}",
                                          action="purchase-item", amount=i % 1000 / 7))
            values.append(value)
            keys.append(f"user-{i % 977:05d}".encode())
            headers.append(h)
            if len(values) == 1000:
                producer.send_batch("events", values, keys=keys, headers=headers)
                values, keys, headers = [], [], []
        if values:
            producer.send_batch("events", values, keys=keys, headers=headers)
    size = len(values[0]) if values else len(codec.encode(Event(id=1, user="user-00001",
                                                                action="purchase-item",
                                                                amount=1.0))[0] or b"")
    print(f"  input: {n:,} records of ~{size} B JSON on {PARTITIONS} partitions")


def passthrough(event: Event) -> Event:
    return event


def hand_written(streams: millstream.Streams, n: int, tag: str) -> float:
    """Variant A: the loop a careful user would write without the runtime."""
    out_stream = f"out-a-{tag}"
    streams.admin().create_stream(out_stream, PARTITIONS)
    out_headers = ModelCodec(Event).encode(Event(id=0, user="", action="", amount=0))[1]
    validate = Event.model_validate_json
    to_json = Event.__pydantic_serializer__.to_json
    seen = 0
    start = time.perf_counter()
    with streams.open_producer() as producer, streams.open_consumer(f"a-{tag}") as consumer:
        consumer.subscribe(["events"])
        next_commit = time.monotonic() + 0.2
        done: dict[StreamPartition, int] = {}
        while seen < n:
            records = consumer.poll(max_records=500, timeout=0.1)
            if not records:
                continue
            values, keys, headers = [], [], []
            for record in records:
                event = validate(record.value or b"")
                values.append(to_json(passthrough(event)))
                keys.append(record.key)
                headers.append(out_headers)
                done[StreamPartition(record.stream, record.partition)] = record.offset + 1
            producer.send_batch(out_stream, values, keys=keys, headers=headers)
            seen += len(records)
            if time.monotonic() >= next_commit:
                producer.flush()
                consumer.commit(done)
                next_commit = time.monotonic() + 0.2
        producer.flush()
        consumer.commit(done)
    return n / (time.perf_counter() - start)


def service(streams: millstream.Streams, n: int, tag: str, plumbing: bool) -> float:
    """Variants B and C: the same work declared as a service."""
    app = App("bench", partitions=PARTITIONS)
    app.service("passthrough", inputs={"events": Event}, outputs={f"out-s-{tag}": Event},
                group=f"s-{tag}")(passthrough)
    runner = ServiceRunner(app, "passthrough", streams, plumbing=plumbing, metrics_interval_s=2.0)
    runner.prepare()
    processed = 0

    def until(r: ServiceRunner) -> bool:
        nonlocal processed
        processed = r.metrics.records_out
        return processed >= n

    start = time.perf_counter()
    runner.run(until=until)
    elapsed = time.perf_counter() - start
    assert processed >= n, processed
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 records, one round")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    print(f"services benchmark: {n:,} records x {rounds} round(s); python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    results: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    with tempfile.TemporaryDirectory(prefix="millstream-bench-svc-") as tmp, \
            millstream.open_streams(f"local:{Path(tmp)}") as streams:
        make_input(streams, n)
        # warm-up (imports, page cache, pydantic's validators)
        hand_written(streams, min(n, 20_000), "warm")
        orders = ["ABC", "BCA", "CAB"]
        for r in range(rounds):
            for variant in orders[r % 3]:
                tag = f"{variant.lower()}{r}"
                if variant == "A":
                    rate = hand_written(streams, n, tag)
                else:
                    rate = service(streams, n, tag, plumbing=variant == "C")
                results[variant].append(rate)
                print(f"  round {r + 1} {variant}: {rate:,.0f} records/s", flush=True)
    a, b, c = (statistics.median(results[k]) for k in "ABC")
    print()
    print(f"  A hand-written loop        {a:>12,.0f} records/s")
    print(f"  B runtime, no plumbing     {b:>12,.0f} records/s   B/A = {b / a:.3f}")
    print(f"  C runtime (as shipped)     {c:>12,.0f} records/s   C/A = {c / a:.3f}")
    print()
    ok_rate = c >= TARGET_RATE
    ok_plumbing = c / b >= TARGET_PLUMBING
    print(f"  pass-through service: {c:,.0f} records/s per process (target ≥ "
          f"{TARGET_RATE:,}): {'PASS' if ok_rate else 'MISS'}")
    print(f"  microarchitecture cost: C/B = {c / b:.3f} (target ≥ {TARGET_PLUMBING}): "
          f"{'PASS' if ok_plumbing else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
