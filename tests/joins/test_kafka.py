"""The stream–table join on a real Kafka: exactly-once (its state checkpointed in Kafka
transactions), the table side read ahead through a Kafka consumer, and partition counts
checked against the broker at start."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

import millstream
from millstream.codecs import ModelCodec
from millstream.errors import InvalidRequestError
from millstream.runtime import ServiceRunner
from millstream.service import App
from millstream.streams._base import Streams
from tests.joins import reference
from tests.joins.apps import Item, Line, Order, line
from tests.service.test_runtime import read_all, run_until

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
        # the orders first: the join reads the items ahead before its first order
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
