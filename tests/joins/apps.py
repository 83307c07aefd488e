"""The joins' test apps: a shop whose orders are joined with its items' titles (stream–table),
clicks with the ads shown (stream–stream) and trades with quotes (as-of).

``app`` is what the crash tests run in child processes (``millstream run
tests.joins.apps:app titles``): the shop, exactly-once, in batches of 20;
``MILLSTREAM_TEST_DELAY_MS`` slows each join so that a kill lands mid-stream."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from millstream.service import App


class Order(BaseModel):
    id: int
    item: str


class Item(BaseModel):
    title: str


class Line(BaseModel):
    order: int
    title: str | None


class Event(BaseModel):
    """A click or an ad shown (``id``), at ``at`` seconds."""

    id: int
    at: float


class Pair(BaseModel):
    shown: int | None
    clicked: int | None


class Answer(BaseModel):
    trade: int
    quote: int | None


def line(order: Order, item: Item | None) -> Line:
    return Line(order=order.id, title=item.title if item else None)


def pair(shown: Event | None, clicked: Event | None) -> Pair:
    return Pair(shown=shown.id if shown else None, clicked=clicked.id if clicked else None)


def answer(trade: Event, quote: Event | None) -> Answer:
    return Answer(trade=trade.id, quote=quote.id if quote else None)


def shop(processing: str = "at-least-once", **options: object) -> App:
    """orders ⋈ items → lines (stream–table), on two partitions."""
    app = App("shop", partitions=2, processing=processing)  # type: ignore[arg-type]
    orders = app.stream("orders", Order)
    items = app.stream("items", Item)
    lines = app.stream("lines", Line)
    app.join_table("titles", orders, items, line, output=lines, **options)  # type: ignore[arg-type]
    return app


def ads(within: float = 10, grace: float = 0, lateness: float = 0,
        idle_timeout: float | None = 30, how: str = "inner") -> App:
    """shown ⋈ clicked within ``within`` s → pairs (stream–stream), on two partitions."""
    app = App("ads", partitions=2)
    shown = app.stream("shown", Event)
    clicked = app.stream("clicked", Event)
    pairs = app.stream("pairs", Pair)
    app.join_streams("clicks", shown, clicked, pair, within=within, output=pairs, time="at",
                     grace=grace, lateness=lateness, idle_timeout=idle_timeout,
                     how=how)  # type: ignore[arg-type]
    return app


def market(grace: float = 0, lateness: float = 0, tolerance: float | None = None,
           inner: bool = False, idle_timeout: float | None = 30,
           report_unmatched: bool = False) -> App:
    """trades as of quotes → answers (as-of), on two partitions."""
    app = App("market", partitions=2)
    trades = app.stream("trades", Event)
    quotes = app.stream("quotes", Event)
    answers = app.stream("answers", Answer)
    app.join_asof("prices", trades, quotes, answer, output=answers, time="at", grace=grace,
                  lateness=lateness, tolerance=tolerance, inner=inner,
                  idle_timeout=idle_timeout, report_unmatched=report_unmatched)
    return app


_DELAY = float(os.environ.get("MILLSTREAM_TEST_DELAY_MS", "0")) / 1000


def slow_line(order: Order, item: Item | None) -> Line:
    if _DELAY:
        time.sleep(_DELAY)
    return line(order, item)


def slow_pair(shown: Event | None, clicked: Event | None) -> Pair:
    if _DELAY:
        time.sleep(_DELAY)
    return pair(shown, clicked)


def _crash_app() -> App:
    """The shop's join and the ads' (within 5 s, a grace so long no record is late), both
    exactly-once, in batches of 20."""
    app = App("shop", partitions=2, processing="exactly-once")
    orders = app.stream("orders", Order)
    items = app.stream("items", Item)
    app.join_table("titles", orders, items, slow_line, output=app.stream("lines", Line))
    app.join_streams("clicks", app.stream("shown", Event), app.stream("clicked", Event),
                     slow_pair, within=5, grace=10**6, time="at",
                     output=app.stream("pairs", Pair))
    for service in app.services.values():
        service.max_batch = 20
    return app


#: what the crash tests run
app = _crash_app()
