"""Typed stream handles: ``orders = app.stream("orders", Order)`` declares the payload once;
the handle names the stream in ``inputs``, ``outputs``, ``ctx.emit`` and ``Emit``, and names
(strings) keep working. A handler whose value annotation cannot hold its input's payload is
refused at declaration; a value emitted to a stream that cannot carry it is refused at the
emit, naming the stream and both types. mypy sees the payload type (checked by running
mypy --strict on a user's module)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from millstream.errors import InvalidRequestError
from millstream.service import App, Context, Emit, Stream
from millstream.testing import TestPlatform

REPO = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    id: int
    total: float


class Invoice(BaseModel):
    order_id: int
    amount: float


class Refund(BaseModel):
    order_id: int


def refusal(action: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        action()
    assert type(caught.value) is InvalidRequestError
    return str(caught.value)


def test_a_handle_carries_what_the_stream_was_declared_with() -> None:
    app = App("shop", partitions=3)
    orders = app.stream("orders", Order)
    raw = app.stream("raw")
    events = app.stream("events", dict, partitions=1)
    assert isinstance(orders, Stream)
    assert (orders.name, orders.payload, orders.partitions, orders.retention) == (
        "orders", "Order", 3, None)
    assert (raw.payload, events.payload, events.partitions) == ("bytes", "dict", 1)
    assert str(orders) == "orders"
    assert app.stream("orders", Order) is orders  # declaring again gives the same handle
    assert app.streams == {"orders": orders, "raw": raw, "events": events}
    assert refusal(lambda: app.stream("orders", Refund)) == (
        "stream 'orders' is already declared with payload Order v1; it cannot also carry "
        "Refund v1")


def test_services_read_and_write_by_handle_and_by_name_alike() -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)
    refunds = app.stream("refunds", Refund)

    @app.service(inputs=orders, outputs=[invoices, "refunds"])
    def billing(order: Order, ctx: Context) -> Emit | None:
        if order.total < 0:
            ctx.emit(refunds, Refund(order_id=order.id))
            return None
        if order.id == 2:
            return Emit(invoices, Invoice(order_id=2, amount=order.total), key="two")
        ctx.emit(invoices, Invoice(order_id=order.id, amount=order.total))
        return None

    @app.service(inputs=["invoices"], outputs={"totals": dict})
    def totals(invoice: Invoice) -> dict[str, float]:
        return {"amount": invoice.amount}

    spec = app.get("billing")
    assert (spec.inputs, spec.outputs) == (("orders",), ("invoices", "refunds"))
    assert app.writers_of(invoices) == ["billing"]
    with TestPlatform(app) as platform:
        platform.send_many("orders", [Order(id=1, total=5.0), Order(id=2, total=7.0),
                                      Order(id=3, total=-1.0)], key=b"k")
        platform.run_until_idle("billing")
        platform.run_until_idle("totals")
        assert platform.values("invoices") == [Invoice(order_id=1, amount=5.0),
                                               Invoice(order_id=2, amount=7.0)]
        assert [r.key for r in platform.records("invoices")] == [b"k", b"two"]
        assert platform.values("refunds") == [Refund(order_id=3)]
        assert platform.values("totals") == [{"amount": 5.0}, {"amount": 7.0}]
        assert platform.exceptions() == []


def test_a_handler_annotation_that_cannot_hold_its_handle_is_refused() -> None:
    app = App("shop")
    orders = app.stream("orders", Order)
    raw = app.stream("raw")

    def declare_refund() -> None:
        @app.service(inputs=[orders])
        def billing(refund: Refund) -> None: ...

    assert refusal(declare_refund) == (
        "service 'billing': handler billing takes `refund: Refund` but input stream 'orders' "
        "carries Order, so billing would be given an Order; annotate `refund: Order`")

    def declare_bytes() -> None:
        @app.service(inputs=[raw])
        def parse(order: Order) -> None: ...

    assert refusal(declare_bytes) == (
        "service 'parse': handler parse takes `order: Order` but input stream 'raw' carries "
        "bytes (the payload of a stream declared without a type), so parse would be given "
        "bytes; declare app.stream('raw', Order) to have it decoded as Order, or annotate "
        "`order: bytes`")
    assert app.services == {}


def test_emitting_a_value_the_stream_cannot_carry_is_refused_naming_both_types() -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)
    refunds = app.stream("refunds", Refund)
    errors: list[str] = []

    @app.service(inputs=[orders], outputs=[invoices])
    def billing(order: Order, ctx: Context) -> None:
        for action in (
            lambda: ctx.emit(invoices, order),  # type: ignore[arg-type]
            lambda: ctx.emit("invoices", order),
            lambda: ctx.emit(refunds, Refund(order_id=order.id)),
            lambda: ctx.emit_now(invoices, Refund(order_id=1)),  # type: ignore[arg-type]
        ):
            try:
                action()
            except InvalidRequestError as exc:
                errors.append(str(exc))
        ctx.emit(invoices, Invoice(order_id=order.id, amount=order.total))

    with TestPlatform(app) as platform:
        platform.send("orders", Order(id=1, total=2.0))
        platform.run_until_idle("billing")
        assert platform.values("invoices") == [Invoice(order_id=1, amount=2.0)]
    assert errors == [
        "stream 'invoices' carries Invoice, but ctx.emit in service 'billing' was given an "
        "Order; send an Invoice to it, or declare another stream for Order values",
        "stream 'invoices' carries Invoice, but ctx.emit in service 'billing' was given an "
        "Order; send an Invoice to it, or declare another stream for Order values",
        "service 'billing' emitted to 'refunds', which is not one of its outputs "
        "(invoices); declare it in outputs=",
        "stream 'invoices' carries Invoice, but ctx.emit_now in service 'billing' was given a "
        "Refund; send an Invoice to it, or declare another stream for Refund values",
    ]


def test_an_emit_of_the_wrong_type_sends_the_record_to_the_exceptions_stream() -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)

    @app.service(inputs=[orders], outputs=[invoices])
    def billing(order: Order) -> Emit:
        return Emit(invoices, order)

    with TestPlatform(app) as platform:
        platform.send("orders", Order(id=1, total=2.0))
        platform.run_until_idle("billing")
        (failure,) = platform.exceptions("billing")
        assert (failure.stage, failure.attempts) == ("encode", 1)
        assert failure.message == (
            "stream 'invoices' carries Invoice, but service 'billing' was given an Order; "
            "send an Invoice to it, or declare another stream for Order values")
        assert platform.values("invoices") == []


USER_MODULE = '''
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel

from millstream.service import App, Context, Stream
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int


class Invoice(BaseModel):
    order_id: int


class DB:
    def save(self, invoice: Invoice) -> None: ...


app = App("shop")
orders = app.stream("orders", Order)
invoices = app.stream("invoices", Invoice)
raw = app.stream("raw")
typed: Stream[Order] = orders
as_bytes: Stream[bytes] = raw


@contextmanager
def open_db(ctx: Context) -> Iterator[DB]:
    yield DB()


@app.service(inputs=[orders], outputs=[invoices], lifespan=open_db)
def billing(order: Order, ctx: Context, db: DB) -> None:
    ctx.emit(invoices, Invoice(order_id=order.id))
    ctx.emit(invoices, order)  # error 1: an Order to a Stream[Invoice]


@app.service(inputs=[orders], lifespan=open_db)  # error 2
def wrong_resource(order: Order, ctx: Context, db: Invoice) -> None:
    ...


with app.open_writer("local:") as writer:
    writer.send(orders, Order(id=1))
    writer.send(orders, Invoice(order_id=1))  # error 3
    writer.send_many(invoices, [Invoice(order_id=1)], key=lambda i: str(i.order_id))
    wrong: Stream[Invoice] = orders  # error 4

with TestPlatform(app) as platform:
    platform.send(orders, Order(id=1))
    got: list[Order] = platform.values(invoices)  # error 5
'''


def test_mypy_strict_sees_the_payload_types_of_handles_writers_and_lifespans(
        tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api")
    module = tmp_path / "shop_app.py"
    module.write_text(textwrap.dedent(USER_MODULE))
    out, err, status = mypy.run([
        "--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy_cache"),
        "--config-file", str(REPO / "pyproject.toml"), "--hide-error-context",
        "--no-error-summary", "--show-error-codes", str(module)])
    errors = [line.split("shop_app.py:", 1)[1] for line in out.splitlines()
              if "error:" in line]
    lines = textwrap.dedent(USER_MODULE).splitlines()

    def at(marker: str) -> int:
        return next(n for n, text in enumerate(lines, 1) if marker in text)

    assert errors == [
        # an Order emitted to a Stream[Invoice]: T cannot be both
        f'{at("# error 1")}: error: Cannot infer value of type parameter "T" of "emit" of '
        '"Context"  [misc]',
        f'{at("# error 2")}: error: Argument 1 has incompatible type '
        '"Callable[[Order, Context, Invoice], None]"; expected '
        '"Callable[[Order, Context, DB], None]"  [arg-type]',
        f'{at("# error 3")}: error: Cannot infer value of type parameter "T" of "send" of '
        '"Writer"  [misc]',
        f'{at("# error 4")}: error: Incompatible types in assignment (expression has type '
        '"Stream[Order]", variable has type "Stream[Invoice]")  [assignment]',
        f'{at("# error 5")}: error: Argument 1 to "values" of "TestPlatform" has '
        'incompatible type "Stream[Invoice]"; expected "Stream[Order]"  [arg-type]',
    ], out + err
    assert status == 1


def test_a_table_output_is_emitted_to_by_its_handle_and_refuses_other_rows() -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    latest = app.table("latest", Order, key="id")
    errors: list[str] = []

    @app.service(inputs=[orders], outputs=[latest])
    def keep(order: Order, ctx: Context) -> None:
        try:
            ctx.emit(latest, Refund(order_id=order.id))
        except InvalidRequestError as exc:
            errors.append(str(exc))
        ctx.emit(latest, order)

    with TestPlatform(app) as platform:
        platform.send_many("orders", [Order(id=1, total=2.0), Order(id=1, total=3.0)])
        platform.run_until_idle("keep")
        assert dict(platform.tables.table("latest").scan()) == {"1": {"id": 1, "total": 3.0}}
    assert errors == [
        "stream 'latest' carries Order, but ctx.emit in service 'keep' was given a Refund; "
        "send an Order to it, or declare another stream for Refund values"] * 2


def test_the_test_kit_sends_and_reads_by_handle_and_refuses_a_wrong_value() -> None:
    app = App("shop", partitions=1)
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)

    @app.service(inputs=[orders], outputs=[invoices])
    def billing(order: Order) -> Invoice:
        return Invoice(order_id=order.id, amount=order.total)

    with TestPlatform(app) as platform:
        assert refusal(lambda: platform.send(orders, Refund(order_id=1))) == (  # type: ignore[arg-type]
            "stream 'orders' carries Order, but TestPlatform.send was given a Refund; send an "
            "Order to it, or declare another stream for Refund values")
        # a key that is not str or bytes is refused naming it, and nothing is sent
        assert refusal(lambda: platform.send_many(
            orders, [Order(id=9, total=1.0)], key=lambda o: o.id)) == (  # type: ignore[arg-type]
            "key=9 (int): a record's key is a str or bytes (or None); convert it, e.g. "
            "key=str(order.id), or key=lambda v: str(v.id) in send_many")
        assert refusal(lambda: platform.send(orders, Order(id=9, total=1.0), key=9)) == (  # type: ignore[arg-type]
            "key=9 (int): a record's key is a str or bytes (or None); convert it, e.g. "
            "key=str(order.id), or key=lambda v: str(v.id) in send_many")
        assert platform.records(orders) == []
        platform.send(orders, Order(id=1, total=2.0))
        platform.send_many(orders, [Order(id=2, total=3.0)])
        platform.run_until_idle("billing")
        assert platform.wait_for(invoices, 2) == platform.values(invoices) == [
            Invoice(order_id=1, amount=2.0), Invoice(order_id=2, amount=3.0)]
        assert [r.offset for r in platform.records(invoices)] == [0, 1]
