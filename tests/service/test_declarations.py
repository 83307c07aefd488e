"""A service declaration refuses a handler the runtime would not run as written: an async
generator (its outputs yielded to nothing), or one whose value annotation cannot hold what its
inputs carry. Each refusal names the service and the handler and says what to write instead."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Optional

import pytest
from pydantic import BaseModel

from millstream.errors import InvalidRequestError
from millstream.service import App, Context
from millstream.testing import TestPlatform

if TYPE_CHECKING:
    from decimal import Decimal  # a name not visible at run time


class Order(BaseModel):
    id: int


class Refund(BaseModel):
    order_id: int


def refusal(declare: Any) -> str:
    """The message of the ``InvalidRequestError`` (that exact type) ``declare()`` raises."""
    with pytest.raises(InvalidRequestError) as caught:
        declare()
    assert type(caught.value) is InvalidRequestError
    return str(caught.value)


async def notify(order: Order) -> None: ...


async def stream_out(order: Order) -> AsyncIterator[Order]:
    yield order


class Mailer:
    async def __call__(self, order: Order) -> None: ...


def test_async_handlers_async_callables_and_partials_of_them_are_declared_async() -> None:
    app = App("shop")
    app.service(inputs={"orders": Order})(notify)
    app.service("mail", inputs={"orders": Order}, concurrency=4)(Mailer())
    app.service("partial", inputs={"orders": Order})(
        functools.partial(functools.partial(notify)))
    assert {name: (s.asynchronous, s.concurrency) for name, s in app.services.items()} == {
        "notify": (True, 16), "mail": (True, 4), "partial": (True, 16)}
    # a callable object must be named: it has no function name to give its service
    assert refusal(lambda: app.service(inputs={"orders": Order})(Mailer())) == (
        "a Mailer object has no name to give its service; name it: "
        "@app.service('my-service', inputs=...)")


def test_an_async_generator_handler_is_refused_at_declaration() -> None:
    app = App("shop")
    assert refusal(lambda: app.service(inputs={"orders": Order})(stream_out)) == (
        "service 'stream_out': handler stream_out is an async generator function; a handler "
        "returns its outputs (or passes them to ctx.emit), it does not yield them. Write it "
        "as `async def` returning a list of outputs, or as a plain `def`")
    assert app.services == {}


def test_a_model_annotation_on_a_stream_declared_without_a_type_is_refused() -> None:
    app = App("shop")

    def declare() -> None:
        @app.service(inputs=["orders"])
        def billing(order: Order) -> None: ...

    message = refusal(declare)
    assert message == (
        "service 'billing': handler billing takes `order: Order` but input stream 'orders' "
        "carries bytes (the payload of a stream declared without a type), so billing would be "
        "given bytes; write inputs={'orders': Order} to "
        "have it decoded as Order, or annotate `order: bytes`")
    assert "billing" not in app.services


def refund(value: Order) -> None: ...


def test_annotations_that_cannot_hold_an_input_are_refused_with_what_to_write() -> None:
    app = App("shop")
    app.stream("refunds", Refund)
    app.stream("audit", dict)
    # another model
    assert refusal(lambda: app.service(inputs=["refunds"])(refund)) == (
        "service 'refund': handler refund takes `value: Order` but input stream 'refunds' "
        "carries Refund, so refund would be given a Refund; annotate `value: Refund`")
    # JSON
    assert refusal(lambda: app.service(inputs=["audit"])(refund)) == (
        "service 'refund': handler refund takes `value: Order` but input stream 'audit' "
        "carries dict, so refund would be given JSON values (a dict); write "
        "inputs={'audit': Order} to have it decoded as Order, or annotate `value: dict`")
    # several inputs: each one the annotation cannot hold is named
    assert refusal(lambda: app.service(inputs=["orders", "refunds", "audit"])(refund)) == (
        "service 'refund': handler refund takes `value: Order` but input stream 'orders' "
        "carries bytes (the payload of a stream declared without a type) and input stream "
        "'refunds' carries Refund and input stream 'audit' carries dict; annotate "
        "`value: bytes | Refund | dict`")
    # a partial's first remaining parameter is the value
    tagged = functools.partial(_tagged, "eu")
    assert refusal(lambda: app.service("tag", inputs={"refunds": Refund})(tagged)) == (
        "service 'tag': handler functools.partial(_tagged) takes `value: Order` but input "
        "stream 'refunds' carries Refund, so functools.partial(_tagged) would be given a "
        "Refund; annotate `value: Refund`")
    assert sorted(app.services) == []


def _tagged(tag: str, value: Order, ctx: Context) -> None: ...


def test_a_local_model_under_postponed_annotations_is_resolved_and_checked() -> None:
    class Local(BaseModel):
        id: int

    app = App("shop")
    with pytest.raises(InvalidRequestError) as caught:
        @app.service("local", inputs={"other": Order})
        def handler(value: Local) -> None: ...

    assert str(caught.value) == (
        "service 'local': handler handler takes `value: Local` but input stream 'other' carries "
        "Order, so handler would be given an Order; annotate `value: Order`")


def test_annotations_that_hold_every_input_are_accepted() -> None:
    class Base(BaseModel):
        id: int

    class Derived(Base):
        extra: str = ""

    app = App("shop")
    app.stream("refunds", Refund)
    app.stream("derived", Derived)
    app.stream("audit", dict)
    app.stream("raw", bytes)

    @app.service(inputs={"orders": Order, "refunds": Refund})
    def union(value: Order | Refund, ctx: Context) -> None: ...

    @app.service(inputs=["orders"])
    def optional(value: Optional[Order]) -> None: ...  # noqa: UP045 - the old spelling too

    @app.service(inputs=["derived"])
    def base(value: Base) -> None: ...  # a subclass's instances are Base instances

    @app.service(inputs=["audit"])
    def json(value: dict[str, Any]) -> None: ...

    @app.service(inputs=["raw", "audit"])
    def anything(value: Any) -> None: ...

    @app.service(inputs=["raw"])
    def unannotated(value) -> None: ...  # type: ignore[no-untyped-def]

    @app.service(inputs=["raw"])
    def hidden(value: Decimal) -> None: ...  # not resolvable at run time: not checked

    @app.service(inputs=["raw"])
    def plain(value: bytes) -> Iterator[bytes]:  # a plain generator is a sync handler
        yield value

    @app.service(inputs=["refunds"])
    def partial_value(value: Refund, ctx: Context) -> None: ...

    assert sorted(app.services) == ["anything", "base", "hidden", "json", "optional",
                                    "partial_value", "plain", "unannotated", "union"]
    assert app.services["union"].takes_context and not app.services["base"].takes_context


def test_a_declared_model_reaches_the_handler_as_that_model() -> None:
    app = App("shop", partitions=1)
    seen: list[Any] = []

    @app.service(inputs={"orders": Order})
    def billing(order: Order) -> None:
        seen.append(order)

    with TestPlatform(app) as platform:
        platform.send("orders", Order(id=7))
        platform.run_until_idle("billing")
    assert seen == [Order(id=7)]
