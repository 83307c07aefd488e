"""Each metrics record names what its service declares (``inputs``, ``outputs``, ``stores``)
and counts the records it read from and wrote to each stream in its interval
(``streams_in``, ``streams_out``), in every delivery mode and for async handlers."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from millstream.records import Record
from millstream.runtime import MetricsRecord
from millstream.runtime._metrics import counts_in
from millstream.service import App, Emit
from millstream.streams._batch import RecordList, ends_of
from millstream.testing import TestPlatform


class Order(BaseModel):
    id: int
    amount: int


class Line(BaseModel):
    id: int
    note: str


def make_app(mode: str) -> App:
    """Two inputs (``orders`` with 3 partitions, ``refunds``) and two outputs (``big``,
    ``small``) plus a table output (``ledger``): an order goes to ``big`` or ``small`` by
    amount and to the ledger; a refund goes to ``small`` only."""
    app = App("counts")
    orders = app.stream("orders", Order, partitions=3)
    refunds = app.stream("refunds", Order)
    big = app.stream("big", Line)
    small = app.stream("small", Line)
    ledger = app.table("ledger", Order, key="id")

    def route(value: Order, ctx: Any) -> list[Emit]:
        line = Line(id=value.id, note=ctx.record.stream)
        if ctx.record.stream == "refunds":
            return [Emit("small", line)]
        return [Emit("big" if value.amount >= 50 else "small", line), Emit("ledger", value)]

    if mode == "async":
        async def split(value: Order, ctx: Any) -> list[Emit]:
            return route(value, ctx)
        handler: Any = split
    else:
        def split(value: Order, ctx: Any) -> list[Emit]:  # type: ignore[misc]
            return route(value, ctx)
        handler = split
    app.service("split", inputs=[orders, refunds], outputs=[big, small, ledger],
                uses=["files"], exactly_once=mode == "exactly-once")(handler)
    return app


def summed(records: list[MetricsRecord], field: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for record in records:
        total.update(getattr(record, field))
    return {name: n for name, n in total.items() if n}


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once", "async"])
def test_metrics_records_count_each_input_and_output_stream_exactly(mode: str) -> None:
    app = make_app(mode)
    orders = [Order(id=i, amount=(i * 37) % 100) for i in range(120)]
    refunds = [Order(id=1000 + i, amount=5) for i in range(17)]
    with TestPlatform(app) as platform:
        platform.send_many("orders", orders, key=lambda o: str(o.id))
        platform.send_many("refunds", refunds, key=lambda o: str(o.id))
        stats = platform.run_until_idle("split")
        records = platform.metrics("split")
    big = sum(o.amount >= 50 for o in orders)
    assert (stats.records_in, stats.records_out) == (137, 137 + 120)
    assert summed(records, "streams_in") == {"orders": 120, "refunds": 17}
    assert summed(records, "streams_out") == {"big": big, "small": 120 - big + 17,
                                              "ledger": 120}
    # the per-stream counts add up to the interval's counters in every record
    for record in records:
        assert sum(record.streams_in.values()) == record.interval.records_in
        assert sum(record.streams_out.values()) == record.interval.records_out
        assert (record.inputs, record.outputs, record.stores) == (
            ("orders", "refunds"), ("big", "small", "ledger"), ("files", "tables:ledger"))


def test_a_shadow_names_the_streams_it_writes_and_counts_them() -> None:
    app = make_app("at-least-once")
    with TestPlatform(app) as platform:
        platform.send_many("refunds", [Order(id=i, amount=1) for i in range(4)])
        platform.run_until_idle("split", shadow="v2")
        (record,) = platform.metrics("split")
    assert (record.group, record.inputs, record.outputs) == (
        "counts.split.shadow.v2", ("orders", "refunds"),
        ("big.shadow.v2", "small.shadow.v2", "ledger.shadow.v2"))
    assert (record.streams_in, record.streams_out) == ({"refunds": 4}, {"small.shadow.v2": 4})


def test_a_batch_is_counted_per_stream_whole_or_part_way() -> None:
    def batch(*streams: str) -> RecordList:
        records = [Record(s, 0, i, 0, None, b"", ()) for i, s in enumerate(streams)]
        return RecordList(records, ends_of(records, lambda sp: 99))

    one = batch("orders", "orders", "orders")
    assert counts_in(one, 3) == {"orders": 3}
    assert counts_in(one, 2) == {"orders": 2}  # left part-way: the records handled
    mixed = batch("orders", "refunds", "orders", "millstream.retry.counts.split")
    assert counts_in(mixed, 4) == {"orders": 2, "refunds": 1, "millstream.retry.counts.split": 1}
    assert counts_in(mixed, 2) == {"orders": 1, "refunds": 1}


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once", "async"])
def test_records_sent_with_emit_now_are_counted_as_they_are_sent(mode: str) -> None:
    app = App("progress")
    orders = app.stream("orders", Order, partitions=2)
    progress = app.stream("progress", Line)
    done = app.stream("done", Line)

    def handle(value: Order, ctx: Any) -> Emit:
        for step in range(value.amount):  # progress at once, the result when it succeeds
            ctx.emit_now(progress, Line(id=value.id, note=f"step {step}"))
        return Emit(done, Line(id=value.id, note="done"))

    if mode == "async":
        async def work(value: Order, ctx: Any) -> Emit:
            return handle(value, ctx)
        handler: Any = work
    else:
        def work(value: Order, ctx: Any) -> Emit:  # type: ignore[misc]
            return handle(value, ctx)
        handler = work
    app.service("work", inputs=[orders], outputs=[progress, done],
                exactly_once=mode == "exactly-once")(handler)
    sent = [Order(id=i, amount=i % 4) for i in range(30)]
    with TestPlatform(app) as platform:
        platform.send_many("orders", sent, key=lambda o: str(o.id))
        stats = platform.run_until_idle("work")
        records = platform.metrics("work")
        steps = len(platform.records(progress))
    assert steps == sum(o.amount for o in sent) == 43
    assert (stats.records_in, stats.records_out) == (30, 30 + 43)
    assert summed(records, "streams_out") == {"progress": 43, "done": 30}
    for record in records:
        assert sum(record.streams_out.values()) == record.interval.records_out
