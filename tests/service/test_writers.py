"""Streams several services write, and ``ctx.emit_now``.

Records on a stream that more than one service of the app writes carry a
``millstream-writer`` header naming the service — on the inline path and the general one —
and records on a service's own streams carry none. ``diff`` compares a shadow only with its
own service's records of such a stream. ``emit_now`` sends at once: also for an attempt that
then fails, and to the shadow's stream for a shadow."""

from __future__ import annotations

from pydantic import BaseModel

import millstream
from millstream._wellknown import WRITER_HEADER
from millstream.codecs import header
from millstream.operations._shadow import diff_outputs
from millstream.runtime import ServiceRunner
from millstream.service import App, Context, RetryPolicy
from tests.service.test_runtime import read_all, run_until, send_orders

QUICK = RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001)


class Item(BaseModel):
    id: int


class Note(BaseModel):
    id: int
    by: str
    step: int = 0


def make(double_by: str = "b", *, live: bool = True) -> App:
    app = App("notes", partitions=2)
    app.stream("notes", Note)

    @app.service(inputs={"items": Item}, outputs={"notes": Note})
    def a(item: Item) -> Note:  # no context, one model output: the inline path
        return Note(id=item.id, by="a")

    @app.service(inputs={"items": Item}, outputs={"notes": Note, "own": Note}, retry=QUICK)
    def b(item: Item, ctx: Context) -> None:
        if live:
            ctx.emit_now("notes", Note(id=item.id, by="b-live", step=ctx.attempt))
        if item.id == 1 and ctx.attempt == 1:
            raise TimeoutError("first attempt fails")
        ctx.emit("notes", Note(id=item.id, by=double_by))
        ctx.emit("own", Note(id=item.id, by="b"))

    return app


def _run(app: App, streams: millstream.Streams, service: str, n: int,
         shadow: str | None = None) -> None:
    runner = ServiceRunner(app, service, streams, metrics_interval_s=60, shadow=shadow)
    run_until(runner, lambda r: r.metrics.records_in >= n)


def _run_both(app: App, streams: millstream.Streams, n: int) -> None:
    """Items 0 .. n-1 through production's a, then b."""
    ServiceRunner(app, "a", streams).prepare()
    ServiceRunner(app, "b", streams).prepare()
    send_orders(streams, [Item(id=i) for i in range(n)], stream="items")
    _run(app, streams, "a", n)
    _run(app, streams, "b", n)


def test_shared_streams_name_the_writer_and_own_streams_do_not() -> None:
    app = make()
    assert app.writers_of("notes") == ["a", "b"] and app.writers_of("own") == ["b"]
    with millstream.open_streams() as streams:
        _run_both(app, streams, 3)
        notes = [(Note.model_validate_json(r.value or b""), header(r.headers, WRITER_HEADER))
                 for r in read_all(streams, "notes")]
        seen = sorted((n.id, n.by, n.step, writer) for n, writer in notes)
        assert seen == [
            (0, "a", 0, "a"), (0, "b", 0, "b"), (0, "b-live", 1, "b"),
            (1, "a", 0, "a"), (1, "b", 0, "b"), (1, "b-live", 1, "b"), (1, "b-live", 2, "b"),
            (2, "a", 0, "a"), (2, "b", 0, "b"), (2, "b-live", 1, "b")]
        own = read_all(streams, "own")
        assert len(own) == 3 and all(header(r.headers, WRITER_HEADER) is None for r in own)


def test_diff_compares_a_shadow_with_its_own_service_only() -> None:
    # (without emit_now: its records and the outputs come from two producers, so their order
    # within a key is not fixed, and diff pairs by order)
    prod, v2 = make(live=False), make(double_by="b2", live=False)
    with millstream.open_streams() as streams:
        _run_both(prod, streams, 4)
        _run(v2, streams, "b", 4, shadow="v2")
        assert len(read_all(streams, "notes.shadow.v2")) == 4
        diffs = {d.stream: d for d in diff_outputs(streams, v2, "b", "v2")}
    notes = diffs["notes"]
    # a's 4 records are left out; b's differ in "by" only
    assert (notes.production_records, notes.other_writers, notes.shadow_records) == (4, 4, 4)
    assert (notes.equal, notes.differing, notes.only_production, notes.only_shadow) == (
        0, 4, 0, 0)
    assert dict(notes.fields) == {"by": 4}
    assert diffs["own"].identical and diffs["own"].other_writers == 0
