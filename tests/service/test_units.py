"""Durations in a service declaration are seconds as floats: ``commit_interval``,
``checkpoint_interval`` and ``RetryPolicy(backoff, max_backoff)``. The runtime waits exactly
those seconds (on the manual clock), and a duration that is not a number of seconds ≥ 0 is
refused with the name of the setting and an example."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel

from millstream.errors import InvalidRequestError
from millstream.service import App, Context, RetryPolicy
from millstream.testing import ManualClock, TestPlatform

#: what a service loop needs to notice the clock moved (several poll turns of 0.05 s)
SETTLE_S = 0.4


class Order(BaseModel):
    id: int
    total: float


def refusal(declare: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        declare()
    return str(caught.value)


def test_retry_back_off_is_seconds_doubling_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.1, multiplier=2.0, max_backoff=0.3)
    assert [policy.delay_s(n) for n in range(2, 6)] == [0.1, 0.2, 0.3, 0.3]
    assert RetryPolicy() == RetryPolicy(attempts=3, backoff=0.1, multiplier=2.0,
                                        max_backoff=5.0)


def test_retry_durations_that_are_not_seconds_are_refused_by_name() -> None:
    assert refusal(lambda: RetryPolicy(backoff=-0.5)) == (
        "retry backoff=-0.5 must be a number of seconds ≥ 0 (e.g. 0.1 for 100 ms)")
    assert refusal(lambda: RetryPolicy(max_backoff="5s")) == (  # type: ignore[arg-type]
        "retry max_backoff='5s' must be a number of seconds ≥ 0 (e.g. 0.1 for 100 ms)")
    assert refusal(lambda: RetryPolicy(multiplier=0.5)) == (
        "retry multiplier=0.5 must be a number ≥ 1")
    assert refusal(lambda: RetryPolicy(attempts=True)) == (
        "retry attempts=True must be an integer ≥ 1 (1 means no retry)")
    with pytest.raises(TypeError, match="backoff_ms"):
        RetryPolicy(backoff_ms=100)  # type: ignore[call-arg]


def test_service_intervals_are_seconds_and_bad_ones_are_refused_by_name() -> None:
    app = App("shop")

    @app.service(inputs={"orders": Order}, commit_interval=0.05, checkpoint_interval=2)
    def billing(order: Order) -> None: ...

    spec = app.get("billing")
    assert (spec.commit_interval, spec.checkpoint_interval) == (0.05, 2.0)
    assert type(spec.checkpoint_interval) is float

    def declare(**options: Any) -> None:
        @app.service("other", inputs={"orders": Order}, **options)
        def other(order: Order) -> None: ...

    assert refusal(lambda: declare(commit_interval=0)) == (
        "service 'other': commit_interval=0 must be a number of seconds > 0 (e.g. 0.2 for "
        "200 ms)")
    assert refusal(lambda: declare(checkpoint_interval=None)) == (
        "service 'other': checkpoint_interval=None must be a number of seconds > 0 (e.g. 0.2 "
        "for 200 ms)")
    assert refusal(lambda: declare(max_batch=0)) == (
        "service 'other': max_batch=0 must be an integer ≥ 1")
    assert refusal(lambda: declare(checkpoint_records=1.5)) == (
        "service 'other': checkpoint_records=1.5 must be an integer ≥ 1")
    with pytest.raises(TypeError, match="commit_interval_ms"):
        declare(commit_interval_ms=200)
    assert list(app.services) == ["billing"]


def test_offsets_are_committed_once_commit_interval_seconds_have_passed() -> None:
    clock = ManualClock()
    app = App("shop", partitions=1)

    @app.service(inputs={"orders": Order}, outputs={"paid": Order}, commit_interval=1.5)
    def billing(order: Order) -> Order:
        return order

    with TestPlatform(app, clock=clock) as platform, platform.running("billing"):
        platform.send_many("orders", [Order(id=i, total=1.0) for i in range(5)])
        platform.wait_for("paid", 5)
        clock.advance(1.4)
        time.sleep(SETTLE_S)
        assert platform.lag("billing") == 5
        clock.advance(0.1)
        platform.wait_until(lambda: platform.lag("billing") == 0,
                            message="offsets committed at 1.5 s")


def test_state_is_checkpointed_once_checkpoint_interval_seconds_have_passed() -> None:
    clock = ManualClock()
    app = App("shop", partitions=1)

    @app.service(inputs={"orders": Order}, stateful=True, checkpoint_interval=2.5,
                 commit_interval=0.1)
    def totals(order: Order, ctx: Context) -> None:
        ctx.state["sum"] = ctx.state.get("sum", 0.0) + order.total

    with TestPlatform(app, clock=clock) as platform, platform.running("totals") as running:
        platform.send_many("orders", [Order(id=i, total=2.0) for i in range(4)])
        platform.wait_until(lambda: running.statistics().records_in == 4,
                            message="4 records processed")
        clock.advance(2.4)
        time.sleep(SETTLE_S)
        assert platform.state("totals") == {}
        clock.advance(0.1)
        assert platform.wait_until(lambda: platform.state("totals"),
                                   message="a checkpoint at 2.5 s") == {"sum": 8.0}
