"""``app.open_writer``: a script (a generator, a backfill) sends typed records through the
app's stream handles without async code. Each send returns once the record is durable, with
its exact position; records carry the codec's schema headers; a declared stream is created
with its declared partitions and retention on first use; a value of the wrong type, or a
stream the app does not declare, is refused naming the stream and the types. On the embedded
log and on Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel

import millstream
from millstream import Position, Retention
from millstream.errors import InvalidRequestError, UnknownStreamError
from millstream.service import App, Writer
from millstream.streams._partitioner import partition_for_key
from tests.service.test_runtime import read_all
from tests.support.backends import BackendUnderTest, kafka_backend, local_backend

BACKENDS = ["local", pytest.param("kafka", marks=pytest.mark.kafka)]


class Order(BaseModel):
    schema_name: ClassVar[str] = "shop.Order"
    schema_version: ClassVar[int] = 2
    id: int
    total: float


class Refund(BaseModel):
    order_id: int


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    if request.param == "local":
        b = local_backend(tmp_path / "log")
    else:
        b = kafka_backend(request.getfixturevalue("kafka_bootstrap"))
    yield b
    b.close()


def shop() -> tuple[App, str]:
    suffix = uuid.uuid4().hex[:8]  # a fresh stream on a shared broker
    return App(f"shop{suffix}", partitions=3), suffix


def test_a_script_sends_typed_records_and_gets_their_exact_positions(
        backend: BackendUnderTest) -> None:
    app, suffix = shop()
    orders = app.stream(f"orders-{suffix}", Order)
    with backend.open() as streams:
        with pytest.raises(UnknownStreamError):
            streams.admin().describe_stream(orders.name)  # not there until the first send
        with app.open_writer(streams) as writer:
            first = writer.send(orders, Order(id=1, total=9.5), key="alice")
            second = writer.send(orders, Order(id=2, total=3.0), key="alice")
            other = writer.send(orders, Order(id=3, total=1.0), key=b"carol")
        alice, carol = partition_for_key(b"alice", 3), partition_for_key(b"carol", 3)
        assert (alice, carol) == (0, 2)
        assert (first, second, other) == (Position(orders.name, alice, 0),
                                          Position(orders.name, alice, 1),
                                          Position(orders.name, carol, 0))
        info = streams.admin().describe_stream(orders.name)
        assert info.partition_count == 3 and info.records == 3
        records = sorted(read_all(streams, orders.name), key=lambda r: (r.partition, r.offset))
        by_position = {(r.partition, r.offset): r for r in records}
        record = by_position[alice, 1]
        assert record.key == b"alice"
        assert Order.model_validate_json(record.value or b"") == Order(id=2, total=3.0)
        assert list(record.headers) == [("content-type", b"application/json"),
                                        ("schema", b"shop.Order"), ("schema-version", b"2")]


def test_send_many_sends_a_generator_in_order_with_a_key_per_value(
        backend: BackendUnderTest) -> None:
    app, suffix = shop()
    orders = app.stream(f"orders-{suffix}", Order, partitions=1)

    def backfill() -> Iterator[Order]:
        for i in range(2_500):  # three batches, the last one short
            yield Order(id=i, total=i / 2)

    with backend.open() as streams, app.open_writer(streams) as writer:
        positions = writer.send_many(orders, backfill(), key=lambda o: str(o.id % 7))
        assert positions == [Position(orders.name, 0, i) for i in range(2_500)]
        records = read_all(streams, orders.name)
        assert [r.key for r in records[:8]] == [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"0"]
        assert [Order.model_validate_json(r.value or b"").id for r in records] == list(
            range(2_500))
        assert writer.send_many(orders, []) == []


def test_a_stream_is_created_with_its_declared_partitions_and_retention(
        tmp_path: Path) -> None:
    app = App("shop", partitions=2)
    latest = app.stream("latest", Order, partitions=5, retention=Retention(compact=True))
    with millstream.open_streams(f"local:{tmp_path}") as streams:
        with app.open_writer(streams) as writer:
            assert writer.send(latest, Order(id=1, total=1.0), key="k") == Position(
                "latest", partition_for_key(b"k", 5), 0)
        info = streams.admin().describe_stream("latest")
        assert (info.partition_count, info.retention) == (5, Retention(compact=True))


def test_a_value_of_another_type_or_an_undeclared_stream_is_refused_by_name(
        tmp_path: Path) -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    raw = app.stream("raw")
    other = App("other").stream("orders", Refund)
    with millstream.open_streams(f"local:{tmp_path}") as streams, \
            app.open_writer(streams) as writer:
        with pytest.raises(InvalidRequestError) as caught:
            writer.send(orders, Refund(order_id=1))  # type: ignore[arg-type]
        assert str(caught.value) == (
            "stream 'orders' carries Order, but Writer.send was given a Refund; send an "
            "Order to it, or declare another stream for Refund values")
        with pytest.raises(InvalidRequestError) as caught:
            writer.send(raw, "text")  # type: ignore[arg-type]
        assert str(caught.value) == (
            "stream 'raw' carries bytes, but Writer.send was given a str; send bytes to it, "
            "or declare another stream for str values")
        with pytest.raises(InvalidRequestError) as caught:
            writer.send("refunds", b"x")
        assert str(caught.value) == (
            "app 'shop' declares no stream 'refunds' (its streams: orders, raw); declare it "
            "with app.stream('refunds', Payload) before sending to it")
        with pytest.raises(InvalidRequestError) as caught:
            writer.send(other, Refund(order_id=1))
        assert str(caught.value) == (
            "this handle of stream 'orders' carries Refund, but app 'shop' declares it with "
            "Order")
        with pytest.raises(InvalidRequestError) as caught:
            writer.send_many(orders, [Order(id=1, total=1.0), None])  # type: ignore[list-item]
        assert str(caught.value) == (
            "stream 'orders' carries Order, but Writer.send was given None; send an Order to "
            "it, or declare another stream for NoneType values")
        # nothing of a refused value was sent; a name works as its handle does
        assert writer.send("orders", Order(id=7, total=7.0)) == Position("orders", 0, 0)
        assert writer.send(raw, None) == Position("raw", 0, 0)  # a tombstone is bytes' None


def test_a_writer_opened_from_a_url_closes_its_backend_and_refuses_sends_after_close(
        tmp_path: Path) -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    writer = app.open_writer(f"local:{tmp_path}")
    assert isinstance(writer, Writer)
    assert writer.send(orders, Order(id=1, total=2.0)) == Position("orders", 0, 0)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(InvalidRequestError) as caught:
        writer.send(orders, Order(id=2, total=2.0))
    assert str(caught.value) == ("this Writer is closed; open another with "
                                 "app.open_writer(...)")
    with millstream.open_streams(f"local:{tmp_path}") as streams:
        assert streams.admin().describe_stream("orders").records == 1


def test_a_claim_checking_app_writes_large_values_as_references(tmp_path: Path) -> None:
    app = App("shop", partitions=1, claim_check_bytes=64)
    orders = app.stream("orders", Order)
    files = millstream.open_files(f"file://{tmp_path / 'files'}")
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        with pytest.raises(InvalidRequestError, match="needs a file store"):
            app.open_writer(streams)
        big = Order(id=1, total=1.0 + 10 ** -9)
        with app.open_writer(streams, files=files) as writer:
            writer.send(orders, Order(id=0, total=0.0))
            writer.send(orders, big.model_copy(update={"id": 10 ** 60}))
        small, large = read_all(streams, "orders")
        assert Order.model_validate_json(small.value or b"").id == 0
        assert b"10000000000" not in (large.value or b"")  # a reference, not the value
        assert len(list(files.list(""))) == 1
