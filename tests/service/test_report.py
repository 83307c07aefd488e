"""``ctx.report``: an input the handler processes by design but someone should look at goes
to the exceptions stream as stage ``reported`` — not retried, its outputs still sent, counted
as an exception but not an error; a report made by an attempt that then fails is dropped;
``exceptions replay --all`` leaves reported inputs out unless asked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import millstream
from millstream._wellknown import retry_stream
from millstream.cli.main import cli
from millstream.errors import OperationTimeoutError
from millstream.runtime import ServiceRunner
from millstream.service import App, Context, RetryPolicy
from millstream.testing import TestPlatform
from tests.service.test_runtime import read_all, run_until, send_orders

QUICK = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.001)


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
            ("reported", "millstream.service.ReportedFailure",
             "order 2: negative total -3.0", 1),
            ("reported", f"{__name__}.Refused", "order 3: over the limit", 2)]
        assert [e.key() for e in found] == [b"2", b"3"]
        assert (stats.records_in, stats.records_out, stats.exceptions, stats.errors,
                stats.retries) == (4, 4, 2, 1, 1)


def test_replay_all_leaves_reported_inputs_out_unless_asked() -> None:
    calls: list[int] = []
    app = make_app(calls)
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "check", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=1, total=5.0), Order(id=2, total=-3.0)],
                    stream="orders")
        run_until(runner, lambda r: r.metrics.records_in >= 2)

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, ["exceptions", "replay", *args])
        assert result.exit_code == 0, result.output
        return result.output

    out = invoke("--all", "--service", "check")
    assert "left out 1 reported input(s)" in out and "nothing to replay" in out
    with millstream.open_streams() as streams:
        assert retry_stream("checks.check") not in streams.admin().list_streams() or \
            read_all(streams, retry_stream("checks.check")) == []
    out = invoke("--all", "--service", "check", "--include-reported")
    assert "replayed 1 record(s)" in out
    with millstream.open_streams() as streams:
        [again] = read_all(streams, retry_stream("checks.check"))
    assert again.key == b"2"


def test_a_report_that_cannot_be_sent_does_not_run_the_handler_again() -> None:
    calls: list[int] = []
    app = make_app(calls)
    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "check", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=2, total=-3.0)], stream="orders")
        real_open = streams.open_producer

        def open_producer() -> millstream.Producer:  # its first exception record fails
            producer = real_open()
            real_send = producer.send
            failed: list[str] = []

            def send(stream: str, *args: object, **kwargs: object) -> object:
                if stream == "millstream.exceptions" and not failed:
                    failed.append(stream)
                    raise OperationTimeoutError("the producer's buffer is full")
                return real_send(stream, *args, **kwargs)  # type: ignore[arg-type]

            producer.send = send  # type: ignore[method-assign]
            return producer

        streams.open_producer = open_producer  # type: ignore[method-assign]
        with pytest.raises(OperationTimeoutError):
            runner.run(until=lambda r: r.metrics.records_in >= 1)
        # the error stops the runner (its supervisor restarts it; the offset was not
        # committed, so the record is processed again then) — but this attempt's outputs
        # were not collected twice by a retry of the handler
        assert calls == [2]
        assert runner.metrics.retries == 0
