"""The ``--kafka HOST:PORT`` mode of ``bench/services.py``: the pass-through service on Kafka
against a hand-written confluent-kafka loop doing the same work.

Input: ``--records`` keyed records of ~100 B JSON on 4 partitions of a fresh topic, written
once per payload (``json``: a dict through ``JsonCodec``; ``model``: the pydantic ``Event``),
with the headers millstream's codec writes. Each run reads it in a group of its own from the
start and writes a fresh output topic (4 partitions, the input's key, the codec's headers),
at-least-once: flush, then commit, every 200 ms.

  A. hand-written: confluent-kafka ``Consumer.consume(500, 0.1)`` → decode (``json.loads`` /
     ``model_validate_json``) → the handler → encode (``json.dumps`` / ``to_json``) →
     ``Producer.produce(topic, value, key, headers=..., on_delivery=...)`` (failures counted),
     ``poll(0)`` after each batch; every 200 ms ``flush()`` then a synchronous ``commit``.
     Same safe settings as millstream's defaults (acks=all, idempotence, linger.ms=5,
     ``fetch.queue.backoff.ms=20``).
  C. the service runtime as users run it (``ServiceThreads``, metrics and all).

The clock (wall and process CPU) starts when the group assigns the partitions (A: its
``on_assign``; C: when the runner reports an assignment, checked every 5 ms) and stops when
the last output was handed to the producer; the final flush and commit are not timed, for
either. Rounds interleave A and C (order rotated); figures are medians, and C/A is also given
as the median of the per-round ratios. Topics made here are deleted at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from pydantic import BaseModel

import millstream
from millstream.codecs import Codec, JsonCodec, ModelCodec
from millstream.runtime import ServiceThreads, ensure_app_streams
from millstream.service import App

PARTITIONS = 4
COMMIT_S = 0.2
PRODUCER = {"acks": "all", "enable.idempotence": "true", "partitioner": "murmur2_random",
            "linger.ms": "5"}
CONSUMER = {"enable.auto.commit": "false", "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
            "fetch.queue.backoff.ms": "20"}


def passthrough_dict(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _value(i: int) -> dict[str, Any]:
    return {"id": i, "user": f"user-{i % 977:05d}", "action": "purchase-item",
            "amount": i % 1000 / 7}


def make_input(streams: millstream.Streams, topic: str, codec: Codec[Any], model: type | None,
               n: int) -> None:
    streams.admin().create_stream(topic, PARTITIONS)
    with streams.open_producer() as producer:
        for start in range(0, n, 1000):
            values, keys, headers = [], [], []
            for i in range(start, min(start + 1000, n)):
                item = _value(i)
                value, h = codec.encode(model(**item) if model else item)
                values.append(value)
                keys.append(item["user"].encode())
                headers.append(h)
            producer.send_batch(topic, values, keys=keys, headers=headers)
        producer.flush()


def hand_written(bootstrap: str, topic: str, out: str, n: int, payload: str,
                 model: type[BaseModel], handler: Callable[[Any], Any]) -> tuple[float, float]:
    """Variant A; (records/s, CPU µs per record)."""
    if payload == "json":
        decode: Callable[[bytes], Any] = json.loads

        def encode(v: Any) -> bytes:
            return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()
        out_headers = list(JsonCodec().encode({})[1])
    else:
        decode = model.model_validate_json
        encode = model.__pydantic_serializer__.to_json
        out_headers = list(ModelCodec(model).headers)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"a-{out}", **CONSUMER})
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    failed = 0
    clock: list[float] = []

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    def on_assign(c: Any, tps: list[Any]) -> None:
        if tps and not clock:
            clock.extend((time.perf_counter(), time.process_time()))

    consumer.subscribe([topic], on_assign=on_assign)
    produce, poll = producer.produce, producer.poll
    done: dict[tuple[str, int], int] = {}
    seen = 0
    next_commit = time.monotonic() + COMMIT_S
    while seen < n:
        for m in consumer.consume(500, 0.1):
            if m.error() is not None:
                continue  # end of a partition
            data = encode(handler(decode(m.value())))
            try:
                produce(out, data, m.key(), headers=out_headers, on_delivery=on_delivery)
            except BufferError:
                poll(0.05)
                produce(out, data, m.key(), headers=out_headers, on_delivery=on_delivery)
            done[m.topic(), m.partition()] = m.offset() + 1
            seen += 1
        poll(0)
        if time.monotonic() >= next_commit and done:
            producer.flush()
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                            asynchronous=False)
            next_commit = time.monotonic() + COMMIT_S
    elapsed, cpu = time.perf_counter() - clock[0], time.process_time() - clock[1]
    producer.flush()
    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                    asynchronous=False)
    consumer.close()
    if failed:
        raise RuntimeError(f"hand-written loop: {failed} outputs failed")
    return n / elapsed, cpu / n * 1e6


def service(url: str, topic: str, out: str, n: int, payload: str, model: type[BaseModel],
            handler: Callable[[Any], Any]) -> tuple[float, float]:
    """Variant C; (records/s, CPU µs per record)."""
    kind: Any = dict if payload == "json" else model
    app = App("bench", partitions=PARTITIONS)
    app.service("passthrough", inputs={topic: kind}, outputs={out: kind},
                group=f"c-{out}")(handler)
    threads = ServiceThreads(app, lambda: millstream.open_streams(url), metrics_interval_s=2.0)
    with millstream.open_streams(url) as streams:
        ensure_app_streams(app, streams)
    (runner,) = threads.runners
    with threads:
        while not runner.metrics.assigned:
            threads.raise_error()
            time.sleep(0.005)
        start, cpu = time.perf_counter(), time.process_time()
        while runner.metrics.records_out < n:
            threads.raise_error()
            time.sleep(0.005)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    threads.raise_error()
    return n / elapsed, cpu / n * 1e6


def _report(payload: str, variants: str, rates: dict[str, list[float]],
            cpus: dict[str, list[float]]) -> None:
    print(f"  {payload} medians:")
    for v in variants:
        print(f"    {v}: {statistics.median(rates[v]):>9,.0f} records/s  "
              f"{statistics.median(cpus[v]):5.2f} µs CPU/record")
    if "A" in variants and "C" in variants:
        per_round = statistics.median(c / a for a, c in zip(rates["A"], rates["C"], strict=True))
        by_rate = statistics.median(rates["C"]) / statistics.median(rates["A"])
        by_cpu = statistics.median(cpus["A"]) / statistics.median(cpus["C"])
        print(f"    C/A = {by_rate:.3f} by median rates, {per_round:.3f} by per-round ratios, "
              f"{by_cpu:.3f} by CPU per record; load {os.getloadavg()[0]:.2f}", flush=True)


def run(bootstrap: str, n: int, rounds: int, payloads: list[str], model: type[BaseModel],
        handler: Callable[[Any], Any], variants: str = "AC") -> int:
    url = f"kafka://{bootstrap}"
    run_id = uuid.uuid4().hex[:8]
    made: list[str] = []
    print(f"services benchmark on Kafka {bootstrap}: {n:,} records x {rounds} round(s), "
          f"payloads {', '.join(payloads)}; load "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    with millstream.open_streams(url) as streams:
        try:
            for payload in payloads:
                codec: Codec[Any] = JsonCodec() if payload == "json" else ModelCodec(model)
                handle = passthrough_dict if payload == "json" else handler
                topic = f"svcbench-{run_id}-{payload}-in"
                made.append(topic)
                make_input(streams, topic, codec, model if payload == "model" else None, n)
                rates: dict[str, list[float]] = {v: [] for v in variants}
                cpus: dict[str, list[float]] = {v: [] for v in variants}
                orders = [variants, variants[::-1]]
                for r in range(-1, rounds):  # round -1 warms up (imports, connections)
                    for v in orders[r % 2]:
                        out = f"svcbench-{run_id}-{payload}-{v.lower()}{r + 1}"
                        made.append(out)
                        streams.admin().create_stream(out, PARTITIONS)
                        m = min(n, 20_000) if r < 0 else n
                        if v == "A":
                            rate, cpu = hand_written(bootstrap, topic, out, m, payload, model,
                                                     handle)
                        else:
                            rate, cpu = service(url, topic, out, m, payload, model, handle)
                        if r < 0:
                            continue
                        rates[v].append(rate)
                        cpus[v].append(cpu)
                        print(f"  {payload} round {r + 1} {v}: {rate:>9,.0f} records/s  "
                              f"{cpu:5.2f} µs CPU/record  load {os.getloadavg()[0]:.2f}",
                              flush=True)
                _report(payload, variants, rates, cpus)
        finally:
            for topic in made:
                try:
                    streams.admin().delete_stream(topic)
                except Exception as exc:  # best effort: say what was left behind
                    print(f"  (could not delete {topic}: {exc})")
    return 0
