"""The systems ``bench/peers.py`` compares, each run in a child process of its own.

Run by ``bench/peers.py`` as ``python bench/peers_systems.py CONFIG_JSON``; not meant to be run
by hand. Every system reads the input topic from its beginning in a fresh consumer group and
writes to an output topic of its own, until the parent sends SIGTERM (after it has counted
every output record); each then stops the way its documentation says a deployment stops it.

Three workloads, each a function of the JSON value (and, for ``count``, of what was counted
before for the value's ``user``, which is also the record's key):

  pass   the value, unchanged: ``json.loads`` → ``json.dumps`` (or the system's own JSON);
  count  ``{"id", "user", "count"}``: how many records of that user were seen so far,
         counting this one (1,000 users; what the state looks like is each system's own);
  io     the value, unchanged, after waiting 10 ms on "I/O" (``time.sleep(0.01)`` in a
         synchronous handler, ``await asyncio.sleep(0.01)`` in an async one).
  window the count of records per user in tumbling windows of 10 s of event time (the
         value's ``ts``, milliseconds), one result ``{"user", "start", "end", "count"}``
         per user and window when the window closes (grace 0): the hand loop and
         millstream close a window when its partition's largest event time reaches its
         end, Quix Streams (its default, ``final()``) when the key's does.

The systems:

  hand        confluent-kafka used directly: ``Consumer.consume(500)``, ``json.loads``, the
              workload, ``json.dumps``, ``Producer.produce(out, value, key)`` with ``poll(0)``
              per batch; every 0.2 s (millstream's default commit interval) ``flush()`` then
              ``commit()`` of the consumed positions — at-least-once; the count lives in a
              dict (not durable).
  quix        Quix Streams: ``Application`` (``auto_offset_reset="earliest"``, other settings
              default: at-least-once, commit every 5 s), JSON topics, ``app.dataframe(input)``;
              ``pass``: ``sdf.to_topic(output)``; ``count``: ``sdf.apply(fn, stateful=True)``
              with the count in its per-key state (RocksDB + changelog topic, durable);
              ``io``: ``sdf.update(sleep)``; ``window``: ``tumbling_window(10 s).count()
              .final()`` with a ``timestamp_extractor`` reading ``ts`` (state in RocksDB +
              changelog topic, durable); ``app.run()``.
  millstream  ``App`` + ``@app.service(inputs={input: dict}, outputs={output: dict})``, all
              defaults (at-least-once, 500 records per poll, commit every 0.2 s, metrics on),
              run in-process by ``ServiceThreads``; ``count`` with ``stateful=True``
              (``ctx.state``, checkpointed to Kafka, durable); ``io`` as a plain ``def``.
              ``window``: ``app.windowed(input, window=Tumbling(10), aggregate=Count(),
              time=ts / 1000, output=...)`` with its defaults (state checkpointed to Kafka,
              its window table in SQLite in a temporary directory, fed after each commit).
  millstream-async  the ``io`` handler as ``async def`` with ``concurrency=64``.
  faststream  FastStream with its Kafka (aiokafka) broker: ``@broker.subscriber(input,
              group_id=..., auto_offset_reset="earliest")`` stacked on
              ``@broker.publisher(output)``, an ``async def`` handler taking and returning a
              ``dict``; default acknowledgement (``AckPolicy.ACK_FIRST``: offsets are
              auto-committed as records are received, before they are handled); the count in
              a dict (not durable); ``io`` with ``max_workers=64`` (its concurrent
              subscriber: up to 64 handlers at once, in any order, still ACK_FIRST). Its
              publisher sends the handler's value without a key and awaits the broker's
              acknowledgement before the handler returns. Its access log (two lines per
              record at INFO by default) is moved to DEBUG (``log_level=logging.DEBUG``), so
              no system writes a log line per record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from typing import Any

IO_WAIT_S = 0.010
BASE_TS = 1_733_480_000_000  # ms; a multiple of WINDOW_MS: input i has event time BASE_TS + i
WINDOW_MS = 10_000  # the tumbling window of the ``window`` workload
CONCURRENCY = 64
COMMIT_INTERVAL_S = 0.2


# -- the workloads as plain functions ------------------------------------------------------------


def counted(value: dict[str, Any], count: int) -> dict[str, Any]:
    return {"id": value["id"], "user": value["user"], "count": count}


def window_result(user: str, start: int, count: int) -> dict[str, Any]:
    return {"user": user, "start": start, "end": start + WINDOW_MS, "count": count}


class HandWindows:
    """The ``window`` workload written by hand: per partition, counts by window start and
    user, and the partition's largest event time; a window is emitted (and forgotten) once
    that time reaches its end (grace 0, nothing late in this input). Not durable."""

    def __init__(self) -> None:
        self.open: dict[int, dict[int, dict[str, int]]] = {}  # partition → start → user → n
        self.latest: dict[int, int] = {}

    def add(self, partition: int, value: dict[str, Any]) -> list[dict[str, Any]]:
        ts = value["ts"]
        windows = self.open.setdefault(partition, {})
        if ts > self.latest.get(partition, -1):
            self.latest[partition] = ts
        start = ts - ts % WINDOW_MS
        users = windows.get(start)
        if users is None:
            windows[start] = users = {}
        user = value["user"]
        users[user] = users.get(user, 0) + 1
        closed: list[dict[str, Any]] = []
        latest = self.latest[partition]
        for done in [s for s in windows if s + WINDOW_MS <= latest]:
            closed.extend(window_result(u, done, n) for u, n in windows.pop(done).items())
        return closed


# -- hand-written confluent-kafka loop -----------------------------------------------------------


def run_hand(cfg: dict[str, Any], stop: threading.Event) -> None:
    from confluent_kafka import Consumer, Producer

    workload, out_topic = cfg["workload"], cfg["output"]
    consumer = Consumer({"bootstrap.servers": cfg["bootstrap"], "group.id": cfg["group"],
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": cfg["bootstrap"], "enable.idempotence": True})
    consumer.subscribe([cfg["input"]])
    counts: dict[str, int] = {}
    loads, dumps, produce = json.loads, json.dumps, producer.produce
    next_commit = time.monotonic() + COMMIT_INTERVAL_S
    windows = HandWindows()
    while not stop.is_set():
        for msg in consumer.consume(num_messages=500, timeout=0.1):
            if msg.error():
                raise RuntimeError(f"consume failed: {msg.error()}")
            value = loads(msg.value())
            if workload == "window":
                for result in windows.add(msg.partition(), value):
                    out = dumps(result).encode()
                    while True:
                        try:
                            produce(out_topic, out, result["user"].encode())
                            break
                        except BufferError:
                            producer.poll(0.05)
                continue
            if workload == "count":
                user = value["user"]
                counts[user] = n = counts.get(user, 0) + 1
                value = counted(value, n)
            elif workload == "io":
                time.sleep(IO_WAIT_S)
            out = dumps(value).encode()
            while True:
                try:
                    produce(out_topic, out, msg.key())
                    break
                except BufferError:  # the producer's queue is full: serve deliveries, retry
                    producer.poll(0.05)
        producer.poll(0)
        if time.monotonic() >= next_commit:
            producer.flush()  # the outputs are written before their inputs are committed
            consumer.commit(asynchronous=True)
            next_commit = time.monotonic() + COMMIT_INTERVAL_S
    producer.flush()
    try:
        consumer.commit(asynchronous=False)
    except Exception as exc:  # nothing consumed since the last commit: nothing to commit
        print(f"final commit: {exc}", file=sys.stderr)
    consumer.close()


# -- Quix Streams --------------------------------------------------------------------------------


def run_quix(cfg: dict[str, Any], stop: threading.Event) -> None:
    del stop  # Application.run() stops on SIGTERM by itself
    from quixstreams import Application
    from quixstreams.state import State

    workload = cfg["workload"]
    app = Application(broker_address=cfg["bootstrap"], consumer_group=cfg["group"],
                      auto_offset_reset="earliest", state_dir=cfg["state_dir"])
    inp = app.topic(cfg["input"], value_deserializer="json",
                    timestamp_extractor=lambda value, headers, ts, kind: value["ts"])
    out = app.topic(cfg["output"], value_serializer="json")
    sdf = app.dataframe(inp)

    def count(value: dict[str, Any], state: State) -> dict[str, Any]:
        n = state.get("count", 0) + 1
        state.set("count", n)
        return counted(value, n)

    def wait(value: dict[str, Any]) -> None:
        time.sleep(IO_WAIT_S)

    if workload == "count":
        sdf = sdf.apply(count, stateful=True)
    elif workload == "io":
        sdf = sdf.update(wait)
    elif workload == "window":
        sdf = sdf.tumbling_window(duration_ms=WINDOW_MS).count().final()
        sdf = sdf.apply(lambda value, key, timestamp, headers: window_result(
            key.decode(), value["start"], value["value"]), metadata=True)
    sdf.to_topic(out)
    app.run()


# -- millstream ----------------------------------------------------------------------------------


def millstream_app(cfg: dict[str, Any]) -> Any:
    """The app for ``cfg`` (also used by the parent to learn whether async handlers exist)."""
    from millstream.service import App, Context

    workload, system = cfg["workload"], cfg["system"]
    app = App(cfg["app"], partitions=cfg["partitions"])
    inputs, outputs = {cfg["input"]: dict}, {cfg["output"]: dict}
    group = cfg["group"]
    if workload == "pass":
        @app.service(inputs=inputs, outputs=outputs, group=group)
        def passthrough(value: dict[str, Any]) -> dict[str, Any]:
            return value
    elif workload == "count":
        @app.service(inputs=inputs, outputs=outputs, group=group, stateful=True)
        def count(value: dict[str, Any], ctx: Context) -> dict[str, Any]:
            user = value["user"]
            ctx.state[user] = n = ctx.state.get(user, 0) + 1
            return counted(value, n)
    elif workload == "window":
        from millstream.service import Count, Tumbling, WindowRow
        app.windowed("window", app.stream(cfg["input"], dict), window=Tumbling(WINDOW_MS / 1000),
                     aggregate=Count(), time=lambda value: value["ts"] / 1000,
                     output=app.stream(cfg["output"], WindowRow), table=f"{cfg['app']}-rows")
    elif system == "millstream-async":
        async def io_async(value: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(IO_WAIT_S)
            return value
        app.service(inputs=inputs, outputs=outputs, group=group,  # type: ignore[call-arg]
                    concurrency=CONCURRENCY)(io_async)
    else:
        @app.service(inputs=inputs, outputs=outputs, group=group)
        def io(value: dict[str, Any]) -> dict[str, Any]:
            time.sleep(IO_WAIT_S)
            return value
    return app


def run_millstream(cfg: dict[str, Any], stop: threading.Event) -> None:
    import millstream
    from millstream.runtime import ServiceThreads

    app = millstream_app(cfg)
    url = f"kafka://{cfg['bootstrap']}"
    # a windowed service keeps its window table in SQLite in the run's state directory
    tables = millstream.open_tables(f"sqlite:///{cfg['state_dir']}/tables.db")
    threads = ServiceThreads(app, lambda: millstream.open_streams(url), tables=tables)
    try:
        with threads:
            while not stop.wait(0.05):
                threads.raise_error()
        threads.raise_error()
    finally:
        tables.close()


# -- FastStream ----------------------------------------------------------------------------------


def run_faststream(cfg: dict[str, Any], stop: threading.Event) -> None:
    del stop  # FastStream.run() stops on SIGTERM by itself
    from faststream import FastStream
    from faststream.kafka import KafkaBroker

    workload = cfg["workload"]
    # its access log writes two lines per record at INFO by default: moved to DEBUG (not
    # shown), as its docs suggest for a busy subscriber, so no system logs per record
    broker = KafkaBroker(cfg["bootstrap"], log_level=logging.DEBUG)
    app = FastStream(broker)
    subscribe = broker.subscriber(cfg["input"], group_id=cfg["group"],
                                  auto_offset_reset="earliest",
                                  max_workers=CONCURRENCY if workload == "io" else None)
    publish = broker.publisher(cfg["output"])
    counts: dict[str, int] = {}

    if workload == "pass":
        @subscribe
        @publish
        async def passthrough(body: dict[str, Any]) -> dict[str, Any]:
            return body
    elif workload == "count":
        @subscribe
        @publish
        async def count(body: dict[str, Any]) -> dict[str, Any]:
            user = body["user"]
            counts[user] = n = counts.get(user, 0) + 1
            return counted(body, n)
    else:
        @subscribe
        @publish
        async def io(body: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(IO_WAIT_S)
            return body

    asyncio.run(app.run())


RUNNERS = {"hand": run_hand, "quix": run_quix, "millstream": run_millstream,
           "millstream-async": run_millstream, "faststream": run_faststream}


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    if cfg["system"] in ("hand", "millstream", "millstream-async"):
        # these two stop on a flag; Quix and FastStream install their own SIGTERM handling
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with tempfile.TemporaryDirectory(prefix="peers-state-") as state_dir:
        cfg["state_dir"] = state_dir
        RUNNERS[cfg["system"]](cfg, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
