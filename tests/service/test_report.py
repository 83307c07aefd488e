"""``ctx.report``: an input the handler processes by design but someone should look at goes
to the exceptions stream as stage ``reported`` — not retried, its outputs still sent, counted
as an exception but not an error; a report made by an attempt that then fails is dropped."""

from __future__ import annotations

from pydantic import BaseModel

from millstream.service import App, Context, RetryPolicy
from millstream.testing import TestPlatform

QUICK = RetryPolicy(attempts=3, backoff_ms=1, max_backoff_ms=1)


class Order(BaseModel):
    id: int
    total: float


class Verdict(BaseModel):
    order_id: int
    ok: bool
    reason: str | None = None


class Refused(Exception):
    """The app's own kind of refusal."""


def make_app(calls: list[int]) -> App:
    app = App("checks", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"verdicts": Verdict}, retry=QUICK)
    def check(order: Order, ctx: Context) -> Verdict:
        calls.append(order.id)
        if order.total < 0:
            ctx.report(f"order {order.id}: negative total {order.total}")
            return Verdict(order_id=order.id, ok=False, reason="negative total")
        if order.total > 1000:
            ctx.report(Refused(f"order {order.id}: over the limit"))
            if ctx.attempt == 1:  # this attempt's report is dropped with it
                raise TimeoutError("the limit service did not answer")
            return Verdict(order_id=order.id, ok=False, reason="over the limit")
        return Verdict(order_id=order.id, ok=True)

    return app


def test_reported_inputs_go_to_exceptions_and_their_outputs_still_go_out() -> None:
    calls: list[int] = []
    with TestPlatform(make_app(calls)) as platform:
        platform.send_many("orders", [Order(id=1, total=5.0), Order(id=2, total=-3.0),
                                      Order(id=3, total=5000.0), Order(id=4, total=7.0)],
                           key=lambda o: str(o.id))
        stats = platform.run_until_idle("check")
        verdicts = sorted(platform.values("verdicts"), key=lambda v: v.order_id)
        assert [(v.order_id, v.ok, v.reason) for v in verdicts] == [
            (1, True, None), (2, False, "negative total"), (3, False, "over the limit"),
            (4, True, None)]
        # not retried: each input handled once, except order 3 whose first attempt raised
        assert sorted(calls) == [1, 2, 3, 3, 4]
        found = sorted(platform.exceptions("check"), key=lambda e: e.message)
        assert [(e.document["stage"], e.error_type, e.message, e.attempts) for e in found] == [
            ("reported", "millstream.service.failures.ReportedFailure",
             "order 2: negative total -3.0", 1),
            ("reported", f"{__name__}.Refused", "order 3: over the limit", 2)]
        assert [e.key() for e in found] == [b"2", b"3"]
        assert (stats.records_in, stats.records_out, stats.exceptions, stats.errors,
                stats.retries) == (4, 4, 2, 1, 1)
