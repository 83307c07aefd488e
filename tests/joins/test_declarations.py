"""What a join or re-keying declaration refuses, and how it says so: each error names the
value and what to write instead, and nothing is declared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from millstream.errors import InvalidRequestError
from millstream.service import App
from millstream.testing import TestPlatform
from tests.joins.apps import Answer, Event, Item, Line, Order, Pair, answer, line, pair

app = App("x", partitions=2)
orders, items, lines = app.stream("orders", Order), app.stream("items", Item), \
    app.stream("lines", Line)
shown, clicked, pairs = app.stream("shown", Event), app.stream("clicked", Event), \
    app.stream("pairs", Pair)
answers = app.stream("answers", Answer)

CASES: list[tuple[Callable[[], Any], str]] = [
    (lambda: app.join_table("j", orders, items, "line", output=lines),  # type: ignore[arg-type]
     "join 'j': combine='line' must be a function of the two joined values returning the "
     "output value (or None to emit nothing)"),
    (lambda: app.join_table("j", orders, items, lambda x: x, output=lines),  # type: ignore[arg-type]
     "join 'j': combine must take the two joined values (left, right), not 1 parameter"),
    (lambda: app.join_streams("j", shown, shown, pair, within=1, output=pairs),
     "join 'j': left and right are both 'shown'; a join reads two different streams"),
    (lambda: app.join_table("j", "nope", items, line, output=lines),  # type: ignore[arg-type]
     "join 'j': stream 'nope' is not a declared stream; declare it with app.stream(name, "
     "Payload) and pass its handle"),
    (lambda: app.join_table("j", orders, items, line, output=3),  # type: ignore[arg-type]
     "join 'j': output=3 must be a stream (app.stream(name, Payload)) or a table "
     "(app.table(...)) for the joined records"),
    (lambda: app.join_streams("j", shown, clicked, pair, within=1, output=pairs,
                              time=5),  # type: ignore[arg-type]
     "join 'j': time=5 must be None (the record's timestamp), a payload field's name, or a "
     "function of the value returning its time"),
    (lambda: app.join_streams("j", shown, clicked, pair, within="1", output=pairs),  # type: ignore[arg-type]
     "join 'j': within='1' must be a number of seconds or a timedelta (e.g. 60 or "
     "timedelta(minutes=1))"),
    (lambda: app.join_asof("j", shown, clicked, answer, output=answers, tolerance=-1),
     "join 'j': tolerance=-1 must be ≥ 0 seconds, in whole milliseconds or more"),
    (lambda: app.join_asof("j", shown, clicked, answer, output=answers, idle_timeout=0),
     "join 'j': idle_timeout=0 must be > 0 seconds, in whole milliseconds or more"),
    (lambda: app.join_table("j", orders, items, line, output=lines,
                            inner="yes"),  # type: ignore[arg-type]
     "join 'j': inner='yes' must be True or False"),
    (lambda: app.rekey("r", orders, by="item", into="orders-2"),  # type: ignore[arg-type]
     "rekey 'r': by='item' must be a function of the value returning its new key (e.g. "
     "by=lambda order: order.customer_id)"),
    (lambda: app.rekey("r", orders, by=lambda o: o.item, into=items),  # type: ignore[arg-type]
     "rekey 'r': 'orders' carries Order v1 but 'items' carries Item v1; re-keying sends "
     "the same values"),
]


@pytest.mark.parametrize("declare, message", CASES, ids=range(len(CASES)))
def test_a_bad_declaration_is_refused_naming_the_value_and_declares_nothing(
        declare: Callable[[], Any], message: str) -> None:
    before = dict(app.services)
    with pytest.raises(InvalidRequestError) as refused:
        declare()
    assert str(refused.value) == message
    assert app.services == before


def test_a_rekey_whose_by_gives_no_key_sends_the_record_to_the_exceptions_stream() -> None:
    shop = App("shop", partitions=2)
    source = shop.stream("orders", Order)
    shop.rekey("by-item", source, by=lambda o: None if o.item == "?" else o.item,  # type: ignore[arg-type, return-value]
               into="orders-by-item")
    with TestPlatform(shop) as platform:
        platform.send(source, Order(id=1, item="a"), key="1")
        platform.send(source, Order(id=2, item="?"), key="2")
        platform.run_until_idle("by-item")
        assert [(r.key, Order.model_validate_json(r.value or b"").id)
                for r in platform.records("orders-by-item")] == [(b"a", 1)]
        (failed,) = platform.exceptions("by-item")
        assert failed.message == ("rekey 'by-item': by() returned None for this record; it "
                                  "must return the new key as a non-empty str, bytes or int")
