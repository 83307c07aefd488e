"""A service's lifespan: ``@app.service(..., lifespan=open_db)`` where ``open_db(ctx)`` is a
context manager. It is entered before the first record and exited after the last — also when
the service fails, with the failure — and what it yields is the handler's third argument.
A handler whose parameters do not fit is refused at declaration. The context offers
``files`` and ``tables`` as properties; there are no string-named stores any more."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import BaseModel

import millstream
from millstream.errors import InvalidRequestError
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int


class Invoice(BaseModel):
    order_id: int


class Ledger:
    """A resource a service keeps between records."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.rows: list[int] = []

    def add(self, order_id: int) -> None:
        self.rows.append(order_id)
        self.events.append(f"add {order_id}")


def refusal(declare: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        declare()
    assert type(caught.value) is InvalidRequestError
    return str(caught.value)


def ledger_app(events: list[str], *, fail_on: int | None = None) -> App:
    app = App("books", partitions=1)
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)

    @contextmanager
    def open_ledger(ctx: Context) -> Iterator[Ledger]:
        events.append(f"open for {ctx.service} of {ctx.app}")
        ledger = Ledger(events)
        try:
            yield ledger
        except BaseException as exc:
            events.append(f"failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            events.append(f"close after {ledger.rows}")

    @app.service(inputs=[orders], outputs=[invoices], lifespan=open_ledger)
    def book(order: Order, ctx: Context, ledger: Ledger) -> Invoice:
        ledger.add(order.id)
        return Invoice(order_id=order.id)

    return app


def test_the_lifespan_opens_before_the_first_record_and_closes_after_the_last() -> None:
    events: list[str] = []
    with TestPlatform(ledger_app(events)) as platform:
        platform.send_many("orders", [Order(id=i) for i in range(3)])
        assert events == []
        platform.run_until_idle("book")
        assert platform.values("invoices") == [Invoice(order_id=i) for i in range(3)]
    assert events == ["open for book of books", "add 0", "add 1", "add 2",
                      "close after [0, 1, 2]"]


def test_the_lifespan_is_closed_with_the_failure_that_stops_the_service() -> None:
    events: list[str] = []
    app = ledger_app(events)

    def stop_badly(runner: ServiceRunner) -> bool:
        if runner.metrics.records_in >= 2:
            raise RuntimeError("the loop broke")
        return False

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "book", streams, metrics_interval_s=60)
        runner.prepare()
        with app.open_writer(streams) as writer:
            writer.send_many(app.streams["orders"], [Order(id=1), Order(id=2)])
        with pytest.raises(RuntimeError, match="the loop broke"):
            runner.run(until=stop_badly)
    assert events == ["open for book of books", "add 1", "add 2",
                      "failed: RuntimeError: the loop broke", "close after [1, 2]"]


def test_a_lifespan_that_fails_to_open_fails_the_service_before_any_record() -> None:
    app = App("books", partitions=1)
    handled: list[Order] = []

    @contextmanager
    def unreachable(ctx: Context) -> Iterator[Ledger]:
        raise ConnectionError("no database at db:5432")
        yield Ledger([])

    @app.service(inputs={"orders": Order}, lifespan=unreachable)
    def book(order: Order, ctx: Context, ledger: Ledger) -> None:
        handled.append(order)

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "book", streams, metrics_interval_s=60)
        with pytest.raises(ConnectionError, match="no database at db:5432"):
            runner.run()
        assert handled == []
        assert streams.admin().describe_group("books.book").members == ()


def test_a_handler_that_does_not_fit_its_lifespan_is_refused() -> None:
    app = App("books")

    @contextmanager
    def open_ledger(ctx: Context) -> Iterator[Ledger]:
        yield Ledger([])

    def without_resource() -> None:
        @app.service(inputs={"orders": Order}, lifespan=open_ledger)
        def book(order: Order, ctx: Context) -> None: ...

    assert refusal(without_resource) == (
        "service 'book' has a lifespan, so handler book must take (value, ctx, resource) — "
        "the third gets what open_ledger opens — not 2 positional parameters")

    def without_lifespan() -> None:
        @app.service(inputs={"orders": Order})
        def book(order: Order, ctx: Context, ledger: Ledger) -> None: ...

    assert refusal(without_lifespan) == (
        "service handler 'book' must take (value) or (value, ctx), not 3 positional "
        "parameters; a third (a resource) needs the service to declare lifespan=...")

    def wrong_resource() -> None:
        @app.service(inputs={"orders": Order}, lifespan=open_ledger)
        def book(order: Order, ctx: Context, ledger: Invoice) -> None: ...

    assert refusal(wrong_resource) == (
        "service 'book': handler book takes `ledger: Invoice` but its lifespan open_ledger "
        "yields Ledger; annotate `ledger: Ledger`")

    def not_callable() -> None:
        @app.service(inputs={"orders": Order}, lifespan=Ledger([]))  # type: ignore[call-overload]
        def book(order: Order, ctx: Context, ledger: Ledger) -> None: ...

    assert refusal(not_callable).startswith(
        "service 'book': lifespan=<tests.service.test_lifespan.Ledger object at ")
    assert app.services == {}


def test_the_context_offers_no_string_named_stores() -> None:
    app = App("books", partitions=1)
    seen: list[str] = []

    @app.service(inputs={"orders": Order})
    def book(order: Order, ctx: Context) -> None:
        for name in ("add_store", "ledger", "extras"):
            seen.append(f"{name}: {hasattr(ctx, name)}")
        try:
            ctx.files  # noqa: B018
        except InvalidRequestError as exc:
            seen.append(str(exc))

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "book", streams, metrics_interval_s=60)
        runner.prepare()
        with app.open_writer(streams) as writer:
            writer.send(app.streams["orders"], Order(id=1))
        runner.run(until=lambda r: r.metrics.records_in >= 1)
    assert seen == [
        "add_store: False", "ledger: False", "extras: False",
        "service 'book' runs without a file store; give its runner one "
        "(ServiceRunner(..., files=millstream.open_files(url)))"]
