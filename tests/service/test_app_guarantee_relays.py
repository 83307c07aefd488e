"""The refused mix reached through a relay: a stateful exactly-once service reading a stream
that an exactly-once service writes from what an at-least-once service writes. Each copy the
at-least-once writer leaves after a crash is one input of the relay, so one output of it —
the reader's state takes both, as if it read the at-least-once stream itself."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from millstream.errors import InvalidRequestError
from millstream.service import App, Context


class Order(BaseModel):
    id: int
    customer: str
    amount: int


def declare(app: App, order: list[str]) -> None:
    def validate() -> None:
        @app.service(inputs={"orders": Order}, outputs={"valid": Order})
        def validate(order: Order) -> Order:
            return order

    def enrich() -> None:
        @app.service(inputs={"valid": Order}, outputs={"enriched": Order}, exactly_once=True)
        def enrich(order: Order) -> Order:
            return order

    def totals() -> None:
        @app.service(inputs={"enriched": Order}, stateful=True, exactly_once=True)
        def totals(order: Order, ctx: Context) -> None:
            ctx.state[order.customer] = ctx.state.get(order.customer, 0) + order.amount

    steps = {"validate": validate, "enrich": enrich, "totals": totals}
    for name in order:
        steps[name]()


@pytest.mark.parametrize("order", [["validate", "enrich", "totals"],
                                   ["totals", "enrich", "validate"],
                                   ["validate", "totals", "enrich"]])
def test_a_stateful_exactly_once_reader_fed_through_an_exactly_once_relay_is_refused(
        order: list[str]) -> None:
    app = App("shop")
    with pytest.raises(InvalidRequestError) as refused:
        declare(app, order)
    assert str(refused.value) == (
        "stateful exactly-once service 'totals' reads stream 'enriched', which service "
        "'enrich' writes from stream 'valid', which at-least-once service 'validate' "
        "writes: after a crash 'validate' writes some records to 'valid' twice, each copy "
        "is passed on to 'enriched', and 'totals' would take each copy into its state. To "
        "fix it, declare the app exactly-once — App('shop', processing='exactly-once') — "
        "so every service commits in transactions, or at least declare 'validate' with "
        "exactly_once=True.")
    assert order[-1] not in app.services


def test_the_chain_is_accepted_when_every_service_in_it_is_exactly_once() -> None:
    app = App("shop", processing="exactly-once")
    declare(app, ["validate", "enrich", "totals"])
    assert [s.exactly_once for s in app.services.values()] == [True, True, True]
