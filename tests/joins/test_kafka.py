"""The joins on a real Kafka, exactly-once (their state checkpointed in Kafka transactions):
the stream–table join with its table side loaded through a Kafka consumer, killed just
before and just after a transaction commits and restarted with every order joined once,
partition counts checked against the broker at start, and the interval join pairing every
record once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream.codecs import ModelCodec
from millstream.errors import InvalidRequestError
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime import ServiceRunner
from millstream.service import App
from millstream.streams._base import Streams
from tests.joins import reference
from tests.joins.apps import Event, Item, Line, Order, Pair, line, pair
from tests.service.test_runtime import read_all, run_until
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.kafka


def url(bootstrap: str) -> str:
    return f"kafka://{bootstrap}?session.timeout.ms=6000&heartbeat.interval.ms=1000"


def shop(suffix: str) -> App:
    app = App(f"k{suffix}", partitions=3, processing="exactly-once")
    orders = app.stream(f"orders-{suffix}", Order)
    items = app.stream(f"items-{suffix}", Item)
    app.join_table("titles", orders, items, line,
                   output=app.stream(f"lines-{suffix}", Line))
    return app


def send(streams: Streams, stream: str, values: list[tuple[str, object]]) -> None:
    with streams.open_producer() as producer:
        for key, value in values:
            data, headers = ModelCodec(type(value)).encode(value)  # type: ignore[arg-type]
            producer.send(stream, data, key=key.encode(), headers=headers)
        producer.flush()


def test_the_stream_table_join_on_kafka_exactly_once(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = shop(suffix)
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        runner = ServiceRunner(app, "titles", streams, metrics_interval_s=60)
        runner.prepare()
        events = [reference.Event(reference.RIGHT, f"k{i}", 0, i) for i in range(10)]
        events += [reference.Event(reference.LEFT, f"k{n % 12}", 0, n) for n in range(300)]
        # the orders first: the join loads the items before its first order
        send(streams, f"orders-{suffix}", [(e.key, Order(id=e.id, item=e.key))
                                           for e in events if e.side == reference.LEFT])
        send(streams, f"items-{suffix}", [(e.key, Item(title=f"item {e.id}"))
                                          for e in events if e.side == reference.RIGHT])
        run_until(runner, lambda r: r.statistics().records_in >= 310, timeout=120)
        got: Counter[tuple[str, int, int | None]] = Counter()
        for record in read_all(streams, f"lines-{suffix}"):
            joined = Line.model_validate_json(record.value or b"")
            got[(record.key or b"").decode(), joined.order,
                None if joined.title is None else int(joined.title.split()[1])] += 1
        rows = [e for e in events if e.side == reference.RIGHT]
        assert got == Counter(reference.table_join(
            rows + [e for e in events if e.side == reference.LEFT]))
        assert sum(got.values()) == 300


def test_inputs_with_other_partition_counts_on_kafka_are_refused_at_start(
        kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = shop(suffix)
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        streams.admin().ensure_stream(f"items-{suffix}", 2)  # made before, with 2
        runner = ServiceRunner(app, "titles", streams, metrics_interval_s=60)
        with pytest.raises(InvalidRequestError) as refused:
            runner.run(until=lambda _: True)
        assert str(refused.value).startswith(
            f"join 'titles' cannot start: on the backend, 'orders-{suffix}' has 3 partitions "
            f"and 'items-{suffix}' has 2 ")


def test_the_interval_join_on_kafka_pairs_every_record_once(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = App(f"k{suffix}", partitions=3, processing="exactly-once")
    shown = app.stream(f"shown-{suffix}", Event)
    clicked = app.stream(f"clicked-{suffix}", Event)
    app.join_streams("clicks", shown, clicked, pair, within=5, grace=10**6, time="at",
                     output=app.stream(f"pairs-{suffix}", Pair))
    events = [reference.Event(side, f"u{n % 7}", (n * 7919) % 60_000,
                              n if side == reference.LEFT else 1_000 + n)
              for side in (reference.LEFT, reference.RIGHT) for n in range(150)]
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        runner = ServiceRunner(app, "clicks", streams, metrics_interval_s=60)
        runner.prepare()
        for side, stream in ((reference.LEFT, shown.name), (reference.RIGHT, clicked.name)):
            send(streams, stream, [(e.key, Event(id=e.id, at=e.time / 1000))
                                   for e in events if e.side == side])
        run_until(runner, lambda r: r.statistics().records_in >= 300, timeout=120)
        got = Counter(((r.key or b"").decode(), p.shown, p.clicked)
                      for r in read_all(streams, f"pairs-{suffix}")
                      for p in [Pair.model_validate_json(r.value or b"")])
    expected, late = reference.interval_join(events, lambda key: 0, within=5_000,
                                             grace=10**9, lateness=0)
    assert late == [] and len(expected) > 50
    assert got == Counter(expected)


KILLED_APP = '''
from millstream.service import App
from tests.joins.apps import Item, Line, Order, slow_line

app = App("kj{suffix}", partitions=2, processing="exactly-once")
app.join_table("titles", app.stream("orders-{suffix}", Order),
               app.stream("items-{suffix}", Item), slow_line,
               output=app.stream("lines-{suffix}", Line))
app.services["titles"].max_batch = 20
'''
ORDERS = 400


def _start(tmp_path: Path, suffix: str, bootstrap: str, fault: str | None,
           log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    env["MILLSTREAM_STREAMS"] = url(bootstrap)
    env["MILLSTREAM_TEST_DELAY_MS"] = "2"
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(log, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", f"joinapp_{suffix}:app", "titles"],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)


def read_lines(streams: Streams, stream: str) -> Counter[tuple[str, int, int | None]]:
    """The joined lines as a read_committed reader sees them: until every order arrived,
    then 2 s more (a duplicate would come after its original)."""
    got: Counter[tuple[str, int, int | None]] = Counter()
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            for r in reader.poll(max_records=1000, timeout=0.2):
                joined = Line.model_validate_json(r.value or b"")
                got[(r.key or b"").decode(), joined.order,
                    None if joined.title is None else int(joined.title.split()[1])] += 1
            if sum(got.values()) >= ORDERS and quiet_until is None:
                quiet_until = time.monotonic() + 2
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    return got


@pytest.mark.parametrize("fault", [
    "service.transaction.before_commit:4",   # outputs and rows in the open transaction
    "service.transaction.after_commit:4",    # committed, nothing after it done
])
def test_a_join_killed_on_kafka_at_a_transaction_ends_with_every_order_joined_once(
        kafka_bootstrap: str, tmp_path: Path, fault: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / f"joinapp_{suffix}.py").write_text(KILLED_APP.format(suffix=suffix))
    orders, items, group = f"orders-{suffix}", f"items-{suffix}", f"kj{suffix}.titles"
    log = tmp_path / "service.log"
    events = [reference.Event(reference.RIGHT, f"k{i}", 0, i) for i in range(20)]
    events += [reference.Event(reference.LEFT, f"k{n % 23}", 0, n) for n in range(ORDERS)]
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        for name in (orders, items):
            streams.admin().ensure_stream(name, 2)
        send(streams, items, [(e.key, Item(title=f"item {e.id}"))
                              for e in events if e.side == reference.RIGHT])
        send(streams, orders, [(e.key, Order(id=e.id, item=e.key))
                               for e in events if e.side == reference.LEFT])
        crashed = _start(tmp_path, suffix, kafka_bootstrap, fault, log)
        assert crashed.wait(120) == FAULT_EXIT_CODE, log.read_text()
        assert committed(streams, group, orders) < ORDERS
        proc = _start(tmp_path, suffix, kafka_bootstrap, None, log)
        try:
            wait_until(lambda: committed(streams, group, orders) >= ORDERS
                       or proc.poll() is not None, 120, "the restarted join to finish")
            assert proc.poll() is None, log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
        assert read_lines(streams, f"lines-{suffix}") == Counter(reference.table_join(events))


def committed(streams: Streams, group: str, stream: str) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == stream)
