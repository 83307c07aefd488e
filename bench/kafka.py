"""The Kafka part of ``bench/streams.py``: millstream's Kafka backend against confluent-kafka
used directly, in the same run, on the same broker.

Imported by ``bench/streams.py`` (workloads 6-8); not run on its own. Every workload writes to
fresh topics (one per client and round, single partition), runs a warm-up first, then
``rounds`` rounds that alternate which client goes first; figures are medians and the ratio is
millstream / direct.

  6. produce 100 B, ``send_batch`` of 1,000 then one ``flush()`` (and, in the same rounds,
     ``write_batch`` of 1,000, no handle); direct: a loop of
     ``Producer.produce(topic, value, on_delivery=cb)``, ``poll(0)`` every 1,000 records (and
     on ``BufferError``), one ``flush()``. A stricter reference is measured beside it: the
     same loop passing ``produce``'s arguments by position (``produce(topic, value, None, -1,
     cb)``), which skips confluent-kafka's keyword parsing, as millstream's producer does.
  7. produce 100 B, ``send()`` one at a time, one ``flush()``; direct: as in 6. In the same
     rounds, ``write()`` one at a time (no handle), one ``flush()``, against the same direct
     figures.
  8. consume 100 B, standalone consumer, ``poll(max_records=10_000)`` until every record is
     returned, touching every record's ``value``; direct:
     ``Consumer.consume(num_messages=10_000)`` touching ``msg.error()`` and ``msg.value()`` of
     every message. In the same rounds, ``poll_batch(max_records=10_000)`` touching every
     value (``batch.values()``). All read the same topic (written untimed before).

The direct clients use the configuration millstream uses (acks=all, idempotence, the
murmur2_random partitioner, the same linger); ``check_configs`` verifies it at start-up.
Both consumers run with ``fetch.queue.backoff.ms=10``: with librdkafka's default (1000 ms) a
consumer that has prefetched ``queued.min.messages`` (100,000) stops fetching for a second,
so reading a backlog measures that pause, for either client, rather than the client.
"""

from __future__ import annotations

import gc
import os
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import millstream

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka import libversion as rdkafka_version
    from confluent_kafka import version as ck_version
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - without the kafka extra
    Producer = None  # type: ignore[assignment,misc]

BATCH = 1_000
SIZE = 100
MAX_POLL = 10_000
POLL_EVERY = 1_000  # the direct producer serves delivery callbacks every this many records
BUSY_LIMIT = 0.3  # CPUs used by other work above which the machine counts as busy
LOAD_WAIT_S = 120.0
RATIO_TARGET = 0.9  # millstream / direct

# What a careful direct user of confluent-kafka configures: the same safe settings millstream
# defaults to (checked against millstream's own configuration in ``check_configs``).
DIRECT_PRODUCER = {
    "acks": "all",
    "enable.idempotence": "true",
    "partitioner": "murmur2_random",
    "linger.ms": "5",
    "message.max.bytes": str(1024 * 1024 + 64 * 1024),
}
DIRECT_CONSUMER = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "fetch.message.max.bytes": str(1024 * 1024 + 64 * 1024),
}
# Set on both consumers (see the module docstring); not a millstream default.
CONSUMER_EXTRA = {"fetch.queue.backoff.ms": "10"}


@dataclass
class KafkaParams:
    records_batch: int  # workload 6, per round and client
    records_send: int  # workload 7
    records_consume: int  # workload 8
    warmup: int  # records per client in the warm-up of each workload
    rounds: int


KAFKA_FULL = KafkaParams(records_batch=1_000_000, records_send=500_000,
                         records_consume=1_000_000, warmup=100_000, rounds=3)
KAFKA_QUICK = KafkaParams(records_batch=200_000, records_send=100_000,
                          records_consume=200_000, warmup=20_000, rounds=1)

# One measurement: (records/s, client CPU µs per record, garbage-collector ms).
Measure = tuple[float, float, float]
Report = Callable[..., Any]


class _GcClock:
    """Wall time spent in the garbage collector (gc.callbacks), for the reports."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


GC = _GcClock()


# -- availability -----------------------------------------------------------------------------


def find_broker(given: str | None) -> tuple[str | None, str]:
    """The bootstrap to benchmark against and, if there is none, why not."""
    if Producer is None:
        return None, "confluent-kafka is not installed (pip install 'millstream[kafka]')"
    bootstrap = given or os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        return None, ("no broker given: pass --kafka host:port or set "
                      "MILLSTREAM_KAFKA_BOOTSTRAP")
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except (OSError, ValueError) as exc:
            return None, f"the broker {hostport!r} is not reachable: {exc}"
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:  # any failure: skip, and say why
        return None, f"{bootstrap} accepts connections but does not answer as Kafka: {exc}"
    return bootstrap, ""


def busy_cpus(seconds: float = 2.0) -> float:
    """How many CPUs' worth of work ran on the machine during ``seconds`` (from /proc/stat)
    while this process sleeps: other engineers' work, or a broker that is not idle."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    cpus = os.cpu_count() or 1
    return (busy1 - busy0) / max(total1 - total0, 1) * cpus


def wait_for_quiet(limit: float = BUSY_LIMIT, wait_s: float = LOAD_WAIT_S) -> float:
    """Print the load average and wait up to ``wait_s`` until other work uses less than
    ``limit`` CPUs (measured over 2 s while this process sleeps; the load average lags by a
    minute and counts this benchmark's own previous workload)."""
    busy = busy_cpus()
    deadline = time.monotonic() + wait_s
    waited = False
    while busy > limit and time.monotonic() < deadline:
        if not waited:
            print(f"  other work is using {busy:.2f} CPUs: waiting up to {wait_s:.0f} s for the "
                  "machine to quiet down", flush=True)
            waited = True
        time.sleep(3)
        busy = busy_cpus()
    load = os.getloadavg()
    note = "" if busy <= limit else "  WARNING: the machine is busy; figures will be noisy"
    print(f"  other work: {busy:.2f} CPUs; load average " + " ".join(f"{x:.2f}" for x in load)
          + note, flush=True)
    return busy


def check_configs(streams: Any, consuming: Any) -> list[str]:
    """Differences between the direct clients' settings and millstream's (should be none)."""
    ours_p, ours_c = streams.options.producer(), consuming.options.consumer()
    diffs = [f"producer {k}: millstream {ours_p.get(k)!r}, direct {v!r}"
             for k, v in DIRECT_PRODUCER.items() if ours_p.get(k) != v]
    diffs += [f"consumer {k}: millstream {ours_c.get(k)!r}, direct {v!r}"
              for k, v in {**DIRECT_CONSUMER, **CONSUMER_EXTRA}.items() if ours_c.get(k) != v]
    return diffs


# -- topics -------------------------------------------------------------------------------------


class Topics:
    """Fresh single-partition topics for one run, all deleted at the end."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def new(self, name: str) -> str:
        topic = f"{self.prefix}-{name}"
        for future in self.admin.create_topics(
                [NewTopic(topic, num_partitions=1, replication_factor=-1)],
                operation_timeout=30).values():
            future.result(timeout=60)
        self.made.append(topic)
        deadline = time.monotonic() + 30  # until the leader is known to a fresh client
        while time.monotonic() < deadline:
            meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions \
                    and all(p.leader >= 0 for p in meta.partitions.values()):
                break
            time.sleep(0.1)
        return topic

    def delete_all(self) -> None:
        if not self.made:
            return
        for future in self.admin.delete_topics(self.made, operation_timeout=30).values():
            try:
                future.result(timeout=60)
            except Exception as exc:  # cleanup: report, carry on
                print(f"  could not delete a benchmark topic: {exc}", flush=True)
        self.made = []


# -- the two clients ---------------------------------------------------------------------------


def _timed(fn: Callable[[], None], records: int) -> Measure:
    gc0, cpu0, t0 = GC.total, time.process_time(), time.perf_counter()
    fn()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return records / elapsed, cpu / records * 1e6, (GC.total - gc0) * 1e3


def ours_write(streams: Any, topic: str, values: list[bytes], records: int,
               batches: bool = False) -> Measure:
    """``Producer.write`` one record at a time (no handle), one ``flush()``; ``batches``:
    ``write_batch`` of ``BATCH`` records instead."""
    with streams.open_producer() as producer:
        producer.send_batch(topic, values[:1]).wait()  # connect, learn the topic: untimed

        def run() -> None:
            write, write_batch = producer.write, producer.write_batch
            for _ in range(records // BATCH):
                if batches:
                    write_batch(topic, values)
                    continue
                for v in values:
                    write(topic, v)
            producer.flush()

        return _timed(run, records)


def ours_produce(streams: Any, topic: str, values: list[bytes], records: int,
                 one_at_a_time: bool) -> Measure:
    with streams.open_producer() as producer:
        producer.send_batch(topic, values[:1]).wait()  # connect, learn the topic: untimed

        def batches() -> None:
            send_batch = producer.send_batch
            for _ in range(records // BATCH):
                send_batch(topic, values)
            producer.flush()

        def singles() -> None:
            send = producer.send
            for _ in range(records // BATCH):
                for v in values:
                    send(topic, v)
            producer.flush()

        return _timed(singles if one_at_a_time else batches, records)


def direct_produce(bootstrap: str, topic: str, values: list[bytes], records: int,
                   positional: bool = False) -> Measure:
    """A correct minimal use of confluent-kafka: count failed deliveries, serve callbacks,
    back off on a full queue, flush, and check. ``positional``: pass ``produce``'s arguments
    by position (the stricter reference)."""
    producer = Producer({"bootstrap.servers": bootstrap, **DIRECT_PRODUCER})
    failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer.produce(topic, values[0], on_delivery=on_delivery)  # connect: untimed
    producer.flush(30)

    def run() -> None:
        produce, poll = producer.produce, producer.poll
        for _ in range(records // BATCH):
            for v in values:
                try:
                    produce(topic, v, on_delivery=on_delivery)
                except BufferError:
                    poll(0.05)
                    produce(topic, v, on_delivery=on_delivery)
            poll(0)
        if producer.flush(60):
            raise RuntimeError("direct producer: records left unacknowledged after 60 s")

    def run_positional() -> None:
        produce, poll = producer.produce, producer.poll
        for _ in range(records // BATCH):
            for v in values:
                try:
                    produce(topic, v, None, -1, on_delivery)
                except BufferError:
                    poll(0.05)
                    produce(topic, v, None, -1, on_delivery)
            poll(0)
        if producer.flush(60):
            raise RuntimeError("direct producer: records left unacknowledged after 60 s")

    result = _timed(run_positional if positional else run, records)
    if failed:
        raise RuntimeError(f"direct producer: {failed} records failed")
    return result


def ours_consume(streams: Any, topic: str, expected: int) -> Measure:
    with streams.open_consumer() as consumer:
        consumer.subscribe([topic])
        got, size = 0, 0

        def run() -> None:  # touches every record's value, as the direct loop does
            nonlocal got, size
            poll = consumer.poll
            while got < expected:
                for r in poll(max_records=MAX_POLL, timeout=1.0):
                    size += len(r.value)
                    got += 1

        result = _timed(run, expected)
    if got != expected or size != expected * SIZE:
        raise RuntimeError(f"millstream consumer read {got} of {expected} records")
    return result


def ours_consume_batch(streams: Any, topic: str, expected: int) -> Measure:
    """``Consumer.poll_batch``, touching every record's value through ``values()``."""
    with streams.open_consumer() as consumer:
        consumer.subscribe([topic])
        got, size = 0, 0

        def run() -> None:
            nonlocal got, size
            poll_batch = consumer.poll_batch
            while got < expected:
                for v in poll_batch(max_records=MAX_POLL, timeout=1.0).values():
                    size += len(v)
                    got += 1

        result = _timed(run, expected)
    if got != expected or size != expected * SIZE:
        raise RuntimeError(f"millstream poll_batch consumer read {got} of {expected} records")
    return result


def direct_consume(bootstrap: str, topic: str, expected: int) -> Measure:
    consumer = Consumer({"bootstrap.servers": bootstrap, **DIRECT_CONSUMER, **CONSUMER_EXTRA,
                         "group.id": f"bench-direct-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, size = 0, 0

    def run() -> None:
        nonlocal got, size
        consume = consumer.consume
        while got < expected:
            for m in consume(num_messages=MAX_POLL, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"direct consumer: {err}")
                size += len(m.value())
                got += 1

    try:
        result = _timed(run, expected)
    finally:
        consumer.close()
    if got != expected or size != expected * SIZE:
        raise RuntimeError(f"direct consumer read {got} of {expected} records")
    return result


def fill(bootstrap: str, topic: str, values: list[bytes], records: int) -> None:
    """Write exactly ``records`` records to ``topic`` (untimed set-up for workload 8)."""
    producer = Producer({"bootstrap.servers": bootstrap, **DIRECT_PRODUCER})
    failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal failed
        failed += err is not None

    for i in range(records):
        while True:
            try:
                producer.produce(topic, values[i % BATCH], on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) or failed:
        raise RuntimeError(f"could not write {records} records to {topic}")


# -- the run -------------------------------------------------------------------------------------


def rounds_of(r: int, runs: dict[str, Callable[[], Measure]]) -> dict[str, Measure]:
    """One round: the clients in the given order in even rounds, reversed in odd ones."""
    order = list(runs) if r % 2 == 0 else list(reversed(runs))
    return {name: runs[name]() for name in order}


def _report(report: Report, name: str, workload: int, got: list[dict[str, Measure]],
            reference: str | None = None, ours: str = "ours") -> None:
    pairs = [(g["direct"][0], g[ours][0]) for g in got]
    result = report(name, str(workload), "rec/s", pairs, ratio_target=RATIO_TARGET,
                    baseline_name="direct",
                    cpu_us_per_record=[(g["direct"][1], g[ours][1]) for g in got],
                    gc_ms=[(g["direct"][2], g[ours][2]) for g in got])
    if reference is not None:
        rates = [g[reference][0] for g in got]
        ref = statistics.median(rates)
        cpu = statistics.median([g[reference][1] for g in got])
        result.extra["reference_positional"] = rates
        result.extra["reference_positional_cpu_us_per_record"] = cpu
        print(f"  {'':<34} reference: direct with produce()'s arguments by position: "
              f"{ref:,.0f} rec/s (millstream / that = {result.value / ref:.2f}x; rounds "
              + ", ".join(f"{x:,.0f}" for x in rates) + f"; client CPU {cpu:.2f} µs per "
              "record)", flush=True)


def run(bootstrap: str, params: KafkaParams, only: set[int], report: Report) -> dict[str, Any]:
    """Workloads 6-8; ``report(name, workload, unit, [(direct, ours), ...], ratio_target=...,
    **extra)`` prints, records and returns each figure."""
    values = [os.urandom(SIZE) for _ in range(BATCH)]
    topics = Topics(bootstrap)
    url = f"kafka://{bootstrap}"
    details: dict[str, Any] = {"bootstrap": bootstrap, "topic_prefix": topics.prefix}
    consume_url = url + "?" + "&".join(f"{k}={v}" for k, v in CONSUMER_EXTRA.items())
    try:
        with millstream.open_streams(url) as streams, \
                millstream.open_streams(consume_url) as consuming:
            diffs = check_configs(streams, consuming)
            details["config_differences"] = diffs
            print("  settings of both: producer "
                  + ", ".join(f"{k}={v}" for k, v in DIRECT_PRODUCER.items())
                  + "; consumer " + ", ".join(f"{k}={v}" for k, v in
                                              {**DIRECT_CONSUMER, **CONSUMER_EXTRA}.items())
                  + ("  (checked: the direct clients' are millstream's)" if not diffs
                     else "  DIFFERENT from millstream's: " + "; ".join(diffs)), flush=True)
            workloads: list[tuple[int, str, int, bool]] = [
                (6, f"send_batch of {BATCH:,} then flush()", params.records_batch, False),
                (7, "send() one at a time, one flush()", params.records_send, True),
            ]
            for number, label, n, one in workloads:
                if number not in only:
                    continue
                print(f"\n{number}. Kafka produce {SIZE} B, {label} ({n:,} records per round; "
                      f"direct: produce(topic, value, on_delivery=cb), poll(0) every "
                      f"{POLL_EVERY:,}, flush())", flush=True)
                tag = "batch" if not one else "one"
                warm = min(params.warmup, n)
                ours_produce(streams, topics.new(f"{tag}-warm-ours"), values, warm, one)
                ours_write(streams, topics.new(f"{tag}-warm-write"), values, warm, not one)
                direct_produce(bootstrap, topics.new(f"{tag}-warm-direct"), values, warm)
                direct_produce(bootstrap, topics.new(f"{tag}-warm-pos"), values, warm, True)
                got = []
                for r in range(params.rounds):
                    details.setdefault("busy_cpus", []).append(wait_for_quiet())
                    runs = {
                        "ours": partial(ours_produce, streams, topics.new(f"{tag}-{r}-ours"),
                                        values, n, one),
                        "direct": partial(direct_produce, bootstrap,
                                          topics.new(f"{tag}-{r}-direct"), values, n),
                        "positional": partial(direct_produce, bootstrap,
                                              topics.new(f"{tag}-{r}-pos"), values, n, True),
                    }
                    runs["write"] = partial(ours_write, streams, topics.new(f"{tag}-{r}-write"),
                                            values, n, not one)
                    got.append(rounds_of(r, runs))
                _report(report, f"Kafka produce {SIZE} B, " + ("send()" if one else "send_batch"),
                        number, got, reference="positional")
                _report(report, f"Kafka produce {SIZE} B, "
                        + ("write()" if one else "write_batch"), number, got,
                        reference="positional", ours="write")
            if 8 in only:
                n = params.records_consume
                print(f"\n8. Kafka consume {SIZE} B, standalone consumer, "
                      f"poll(max_records={MAX_POLL:,}) ({n:,} records per round, both clients "
                      f"read the same fresh topic; direct: consume(num_messages={MAX_POLL:,}) "
                      "touching error() and value())", flush=True)
                warm = min(params.warmup, n)
                t_warm = topics.new("consume-warm")
                fill(bootstrap, t_warm, values, warm)
                ours_consume(consuming, t_warm, warm)
                ours_consume_batch(consuming, t_warm, warm)
                direct_consume(bootstrap, t_warm, warm)
                got = []
                for r in range(params.rounds):
                    t = topics.new(f"consume-{r}")
                    fill(bootstrap, t, values, n)
                    details.setdefault("busy_cpus", []).append(wait_for_quiet())
                    got.append(rounds_of(r, {
                        "ours": partial(ours_consume, consuming, t, n),
                        "batch": partial(ours_consume_batch, consuming, t, n),
                        "direct": partial(direct_consume, bootstrap, t, n),
                    }))
                _report(report, f"Kafka consume {SIZE} B", 8, got)
                _report(report, f"Kafka consume {SIZE} B, poll_batch", 8, got, ours="batch")
    finally:
        topics.delete_all()
    return details


def versions() -> str:
    if Producer is None:
        return "confluent-kafka not installed"
    return f"confluent-kafka {ck_version()}, librdkafka {rdkafka_version()[0]}"
