"""Benchmark of the service runtime: a pass-through service against a hand-written loop.

Run with ``make bench`` or ``.venv/bin/python bench/services.py [--quick] [--rounds N]``;
``--kafka HOST:PORT`` runs the same comparison on a Kafka broker instead (hand-written
confluent-kafka loop against the runtime, dict and pydantic payloads: ``_services_kafka.py``).

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

Each round runs A, B and C in a rotating order, each on its own copy of a database holding
only the input (so no run pays for another's WAL growth); figures are medians over rounds
(5 by default), with the CPU time per record beside each rate. Reported: C's records/s
(target ≥ 100,000 per process), C / A (the runtime's overhead against a hand-written loop)
and C / B (the microarchitecture's cost; target ≥ 0.95 — at most 5 %, judged on the median
of the per-round ratios C/B, which cancels most of the machine's drift between rounds).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

import millstream
from millstream.codecs import ModelCodec
from millstream.records import StreamPartition
from millstream.runtime import ServiceThreads, ensure_app_streams
from millstream.service import App

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
    """Variants B and C: the same work declared as a service, run as an app's services run in
    one process (``ServiceThreads``: the runner in a thread of its own; this thread checks its
    output count every 5 ms, so the clock stops within 5 ms of the last record)."""
    app = App("bench", partitions=PARTITIONS)
    app.service("passthrough", inputs={"events": Event}, outputs={f"out-s-{tag}": Event},
                group=f"s-{tag}")(passthrough)
    threads = ServiceThreads(app, lambda: millstream.open_streams(streams.url),
                             plumbing=plumbing, metrics_interval_s=2.0)
    ensure_app_streams(app, streams)  # before the clock starts, as for variant A
    (runner,) = threads.runners
    start = time.perf_counter()
    with threads:
        while runner.metrics.records_out < n:
            threads.raise_error()
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    threads.raise_error()
    return n / elapsed


def _fresh(template: Path, into: Path) -> millstream.Streams:
    """A copy of the database holding only the input: every run starts from the same file
    (no run pays for another's WAL growth or checkpoints)."""
    shutil.copytree(template, into)
    return millstream.open_streams(f"local:{into}")


def _timed(run: Callable[[], float]) -> tuple[float, float]:
    """(records/s, process CPU seconds) of one run."""
    cpu = time.process_time()
    rate = run()
    return rate, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 records, one round")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--kafka", metavar="HOST:PORT", default=None,
                        help="run on this Kafka broker (A: confluent-kafka loop, C: runtime)")
    parser.add_argument("--payload", choices=["json", "model", "both"], default="both",
                        help="with --kafka: dict (JSON) or pydantic payloads, or both")
    parser.add_argument("--variants", default="AC", help="with --kafka: which of A and C")
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 5)
    if args.kafka:
        sys.path.insert(0, str(Path(__file__).parent))
        from _services_kafka import run as run_kafka

        payloads = ["json", "model"] if args.payload == "both" else [args.payload]
        return run_kafka(args.kafka, n, args.rounds or (1 if args.quick else 3), payloads,
                         Event, passthrough, args.variants)
    print(f"services benchmark: {n:,} records x {rounds} round(s); python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    rates: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    cpus: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    with tempfile.TemporaryDirectory(prefix="millstream-bench-svc-") as tmp:
        template = Path(tmp) / "template"
        with millstream.open_streams(f"local:{template}") as streams:
            make_input(streams, n)
        with _fresh(template, Path(tmp) / "warm") as streams:  # imports, page cache, pydantic
            hand_written(streams, min(n, 20_000), "warm")
        orders = ["ABC", "BCA", "CAB"]
        for r in range(rounds):
            for variant in orders[r % 3]:
                tag = f"{variant.lower()}{r}"
                with _fresh(template, Path(tmp) / tag) as streams:
                    if variant == "A":
                        rate, cpu = _timed(lambda s=streams, t=tag: hand_written(s, n, t))
                    else:
                        rate, cpu = _timed(lambda s=streams, t=tag, v=variant: service(
                            s, n, t, plumbing=v == "C"))
                shutil.rmtree(Path(tmp) / tag)
                rates[variant].append(rate)
                cpus[variant].append(cpu / n * 1e6)
                print(f"  round {r + 1} {variant}: {rate:>9,.0f} records/s  "
                      f"{cpu / n * 1e6:5.2f} µs CPU/record", flush=True)
    a, b, c = (statistics.median(rates[k]) for k in "ABC")
    ca, cb, cc = (statistics.median(cpus[k]) for k in "ABC")
    per_round_cb = statistics.median(rates["C"][i] / rates["B"][i] for i in range(rounds))
    print()
    print("  medians:")
    print(f"  A hand-written loop        {a:>10,.0f} records/s  {ca:5.2f} µs CPU/record")
    print(f"  B runtime, no plumbing     {b:>10,.0f} records/s  {cb:5.2f} µs CPU/record  "
          f"B/A = {b / a:.3f}")
    print(f"  C runtime (as shipped)     {c:>10,.0f} records/s  {cc:5.2f} µs CPU/record  "
          f"C/A = {c / a:.3f}")
    print()
    print(f"  pass-through service: {c:,.0f} records/s per process (target ≥ "
          f"{TARGET_RATE:,}): {'PASS' if c >= TARGET_RATE else 'MISS'}")
    print(f"  microarchitecture cost: C/B = {c / b:.3f} by median rates, {per_round_cb:.3f} by "
          f"median of per-round ratios, {cb / cc:.3f} by CPU per record (target ≥ "
          f"{TARGET_PLUMBING}): {'PASS' if per_round_cb >= TARGET_PLUMBING else 'MISS'} "
          "(judged on the per-round ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
