"""millstream.testing on a small app of its own: outputs, state, failures, two instances,
the manual clock, metrics, timeout messages and clean-up."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

import millstream.testing
from millstream.errors import InvalidRequestError
from millstream.runtime import METRICS_STREAM, Counters, MetricsRecord
from millstream.service import App, Context, RetryPolicy
from millstream.testing import DEFAULT_EPOCH, ManualClock, TestPlatform

SLOW_RETRY = RetryPolicy(attempts=3, backoff=60.0, max_backoff=600.0)


class Order(BaseModel):
    id: int
    customer: str
    total: float


class Invoice(BaseModel):
    order_id: int
    amount: float


def make_app(partitions: int = 4) -> App:
    app = App("shop", partitions=partitions)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice}, retry=SLOW_RETRY)
    def billing(order: Order) -> Invoice:
        if order.total < 0:
            raise ValueError(f"order {order.id} has a negative total")
        return Invoice(order_id=order.id, amount=order.total * 2)

    @app.service(inputs={"orders": Order}, stateful=True)
    def totals(order: Order, ctx: Context) -> None:
        ctx.state[order.customer] = ctx.state.get(order.customer, 0.0) + order.total

    return app


def orders(n: int, *, customers: int = 5) -> list[Order]:
    return [Order(id=i, customer=f"c{i % customers}", total=float(i)) for i in range(n)]


def by_customer(order: Order) -> str:
    return order.customer


def test_public_names() -> None:
    assert millstream.testing.__all__ == [
        "DEFAULT_EPOCH", "ManualClock", "RunningService", "TestPlatform"]


def test_a_stateless_service_turns_orders_into_the_expected_invoices() -> None:
    with TestPlatform(make_app()) as platform:
        positions = platform.send_many("orders", orders(6), key=by_customer)
        assert len(positions) == 6 and {p.stream for p in positions} == {"orders"}
        with platform.running("billing") as billing:
            invoices = platform.wait_for("invoices", 6)
        assert sorted(invoices, key=lambda i: i.order_id) == [
            Invoice(order_id=i, amount=2.0 * i) for i in range(6)]
        # outputs keep the input's key, and carry the schema headers
        assert {r.key for r in platform.records("invoices")} == {b"c0", b"c1", b"c2", b"c3",
                                                                 b"c4"}
        assert all(dict(r.headers)["schema"] == b"Invoice"
                   for r in platform.records("invoices"))
        assert billing.statistics().records_in == 6 and not billing.alive
        assert platform.lag("billing") == 0
        assert platform.exceptions() == []


def test_a_shadow_writes_to_shadow_streams_in_its_own_group() -> None:
    with TestPlatform(make_app()) as platform:
        platform.send_many("orders", orders(3), key=by_customer)
        stats = platform.run_until_idle("billing", shadow="v2")
        assert stats.records_out == 3
        shadowed = platform.values("invoices.shadow.v2")
        assert sorted(i.order_id for i in shadowed) == [0, 1, 2]
        assert platform.values("invoices") == []
        assert platform.lag("billing", shadow="v2") == 0
        assert platform.lag("billing") == 3  # production's group has not read anything
        (final,) = platform.metrics("billing")
        assert (final.group, final.version) == ("shop.billing.shadow.v2", "v2")


def test_run_until_idle_leaves_the_expected_fold_in_the_checkpointed_state() -> None:
    items = orders(40)
    with TestPlatform(make_app()) as platform:
        platform.send_many("orders", items, key=by_customer)
        assert platform.lag("totals") == 40
        stats = platform.run_until_idle("totals")
        expected: dict[str, float] = {}
        for order in items:
            expected[order.customer] = expected.get(order.customer, 0.0) + order.total
        assert platform.state("totals") == expected
        # each customer's state lives in the shard of its key's partition, and only there
        shards = platform.state_by_partition("totals")
        assert sum(len(s) for s in shards.values()) == len(expected)
        assert stats.records_in == 40 and stats.exceptions == 0
        assert platform.lag("totals") == 0
        (final,) = platform.metrics("totals")
        assert final.final is True and final.totals.records_in == 40
        # more input, another run: the state picks up from its checkpoint
        platform.send("orders", Order(id=99, customer="c0", total=1.0), key="c0")
        assert platform.run_until_idle("totals").records_in == 1
        assert platform.state("totals")["c0"] == expected["c0"] + 1.0


def test_two_instances_split_the_partitions_and_process_every_record_once() -> None:
    app = make_app(partitions=4)
    with TestPlatform(app) as platform:
        group = app.get("billing").group
        with platform.running("billing", instances=2) as billing:
            info = billing.wait_assigned()
            described = platform.streams.admin().describe_group(group)
            assert len(described.members) == 2
            owned = [sorted(sp.partition for sp in m.partitions if sp.stream == "orders")
                     for m in described.members]
            assert sorted(owned) == [[0, 2], [1, 3]]  # partition p to member p mod 2
            owners = {p.partition: p.owner for p in info.partitions if p.stream == "orders"}
            assert set(owners) == {0, 1, 2, 3}
            assert set(owners.values()) == {m.member_id for m in described.members}

            platform.send_many("orders", orders(200), key=lambda o: str(o.id))
            platform.wait_for("invoices", 200)
            per_instance = [r.statistics().records_in for r in billing.runners]
        stats = billing.stop()  # already stopped by the with block: idempotent
        assert all(n > 0 for n in per_instance) and sum(per_instance) == 200
        assert stats.records_in == 200 and stats.records_out == 200
        ids = sorted(i.order_id for i in platform.values("invoices"))
        assert ids == list(range(200))  # every record, none twice
        assert platform.exceptions() == []
        assert platform.lag("billing") == 0
        assert platform.streams.admin().describe_group(group).members == ()


def test_minutes_of_retry_back_off_take_no_real_time_on_the_manual_clock() -> None:
    clock = ManualClock()
    app = make_app(partitions=1)
    policy = app.get("billing").retry
    waits = [policy.delay_s(n) for n in range(2, policy.attempts + 1)]
    assert waits == [60.0, 120.0]
    with TestPlatform(app, clock=clock) as platform:
        platform.send_many("orders", [Order(id=1, customer="a", total=1.0),
                                      Order(id=2, customer="a", total=-5.0),
                                      Order(id=3, customer="a", total=3.0)])
        started = time.monotonic()
        stats = platform.run_until_idle("billing")
        # the back-off waited for on a real clock would take 60 s at least; a sixth of that
        # proves none was, and leaves a loaded machine seconds
        assert time.monotonic() - started < waits[0] / 6
        assert clock.slept == sum(waits) == 180.0
        assert clock.elapsed == 180.0
        assert clock.time() == DEFAULT_EPOCH + 180.0
        (failure,) = platform.exceptions("billing")
        assert failure.attempts == 3
        assert failure.message == "order 2 has a negative total"
        assert failure.error_type == "builtins.ValueError"
        assert failure.input["offset"] == 1
        assert failure.document["time_ms"] == int((DEFAULT_EPOCH + 180.0) * 1000)
        assert [i.order_id for i in platform.values("invoices")] == [1, 3]
        assert (stats.records_in, stats.retries, stats.errors, stats.exceptions) == (3, 2, 3, 1)


def test_advancing_the_clock_past_the_metrics_interval_writes_a_metrics_record() -> None:
    clock = ManualClock()
    with TestPlatform(make_app(), clock=clock, metrics_interval_s=30) as platform:
        with platform.running("billing"):
            platform.send_many("orders", orders(5), key=by_customer)
            platform.wait_for("invoices", 5)
            assert platform.metrics("billing") == []
            clock.advance(30)
            (doc,) = platform.wait_until(lambda: platform.metrics("billing"),
                                         message="a metrics record")
        assert doc.totals == Counters(records_in=5, records_out=5, errors=0, retries=0,
                                      exceptions=0)
        assert doc.histogram.count == 5
        assert doc.final is False
        assert doc.time_ms == int((DEFAULT_EPOCH + 30) * 1000)
        assert doc.interval_ms == 30_000
        assert doc.group == "shop.billing"
        first, final = platform.metrics("billing")
        assert first == doc and final.final is True
        assert final.interval.records_in == 0  # nothing since the first record


def test_wait_for_timeout_lists_what_arrived_and_why_the_rest_did_not() -> None:
    with TestPlatform(make_app(partitions=1)) as platform:
        platform.send_many("orders", [Order(id=1, customer="a", total=4.0),
                                      Order(id=2, customer="a", total=-1.0)])
        with platform.running("billing"):
            started = time.monotonic()
            with pytest.raises(AssertionError) as caught:
                platform.wait_for("invoices", 2, timeout=1.0)
            # it gave up at its own timeout, not wait_for's default (5 s); 3 s for the report
            assert 1.0 <= time.monotonic() - started < 4.0
        message = str(caught.value)
        assert "invoices holds 1 record(s) after 1.0 s, not the 2 waited for" in message
        assert "Invoice(order_id=1, amount=8.0)" in message
        assert ("billing gave up on orders/0@1 after 3 attempt(s): builtins.ValueError: "
                "order 2 has a negative total") in message
        assert "running: billing" in message


def test_wait_until_reports_the_last_value_it_saw() -> None:
    with TestPlatform(make_app()) as platform, pytest.raises(
            AssertionError, match=r"two invoices did not hold within 0.1 s; last value: \[\]"):
        platform.wait_until(lambda: platform.values("invoices"), timeout=0.1,
                            message="two invoices")


def test_leaving_stops_running_services_and_deletes_the_directory() -> None:
    platform = TestPlatform(make_app())
    with platform:
        directory = platform.directory
        assert directory is not None and (directory / "streams.db").exists()
        billing = platform.start("billing", instances=2)
        platform.send("orders", Order(id=7, customer="x", total=1.0), key="x")
        platform.wait_for("invoices", 1)
        assert billing.alive
    assert not billing.alive
    assert not directory.exists()
    with pytest.raises(InvalidRequestError, match="not open"):
        platform.streams  # noqa: B018


def test_a_crashed_instance_fails_the_wait_and_stop_raises_its_error() -> None:
    app = App("broken", partitions=1)

    @app.service(inputs={"orders": Order}, stateful=True, checkpoint_records=1)
    def keep_sets(order: Order, ctx: Context) -> None:
        ctx.state["seen"] = {order.id}  # not JSON: the checkpoint cannot be written

    with TestPlatform(app) as platform:
        handle = platform.start("keep_sets")
        platform.send("orders", Order(id=1, customer="a", total=1.0))
        with pytest.raises(AssertionError, match="'keep_sets' crashed: InvalidRequestError"):
            platform.wait_until(platform.exceptions, timeout=5.0)
        with pytest.raises(InvalidRequestError, match="not JSON-serialisable"):
            handle.stop()
        handle.stop()  # reported once; stopping again is quiet
        assert platform.exceptions() == []  # and the wait helpers no longer raise it


def test_partitions_override_and_undeclared_streams() -> None:
    with TestPlatform(make_app(partitions=4), partitions_override=1) as platform:
        assert platform.streams.admin().describe_stream("orders").partition_count == 1
        with pytest.raises(InvalidRequestError, match="declares no stream 'nope'"):
            platform.send("nope", b"x")
        with pytest.raises(InvalidRequestError,
                           match=r"carries Order, but TestPlatform\.send was given an Invoice"):
            platform.send("orders", Invoice(order_id=1, amount=1))
    with pytest.raises(InvalidRequestError, match="does not declare"):
        TestPlatform(make_app(), partitions_override={"nope": 2})


def test_manual_clock_moves_only_when_told_and_is_thread_safe() -> None:
    clock = ManualClock(start=100.0)
    assert (clock.time(), clock.monotonic()) == (100.0, 0.0)
    clock.advance(1.5)
    clock.sleep(0.5)
    assert (clock.time(), clock.monotonic(), clock.slept) == (102.0, 2.0, 0.5)
    with pytest.raises(InvalidRequestError, match="time never goes back"):
        clock.advance(-1)

    def tick(_: Any = None) -> None:
        for _ in range(1000):
            clock.advance(1)

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.elapsed == 8002.0


class Photo(BaseModel):
    name: str
    pixels: str


def test_wait_for_returns_claim_checked_values_whole_as_the_services_read_them() -> None:
    # over the 1 MiB record limit: without the claim-check no such record could be stored
    app = App("album", partitions=1, claim_check_bytes=64 * 1024)
    big = "x" * (1024 * 1024 + 1)

    @app.service(inputs={"photos": Photo}, outputs={"prints": Photo})
    def enlarge(photo: Photo) -> Photo:
        return Photo(name=photo.name + ".big", pixels=photo.pixels * (len(big) // 5))

    with TestPlatform(app) as platform:
        platform.send("photos", Photo(name="p1", pixels="abcde"))
        with platform.running("enlarge"):
            prints = platform.wait_for("prints", 1)
        assert prints == [Photo(name="p1.big", pixels="abcde" * (len(big) // 5))]
        # the platform's own sends are claim-checked as the services' are
        platform.send("photos", Photo(name="p2", pixels=big))
        assert platform.values("photos") == [Photo(name="p1", pixels="abcde"),
                                             Photo(name="p2", pixels=big)]
        assert platform.exceptions() == []
        # what travelled in the streams were references to one object per large value
        assert sorted(ref.size for ref in platform.files.list("claim-check/")) == [
            25 + len(big), 29 + len(big) // 5 * 5]


def test_run_until_idle_on_a_reader_of_the_metrics_stream_says_why_it_is_never_idle() -> None:
    app = App("watch")
    metrics = app.stream(METRICS_STREAM, MetricsRecord, partitions=1)

    @app.service(inputs=[metrics])
    def latency(record: MetricsRecord) -> None:
        pass

    with TestPlatform(app) as platform, pytest.raises(AssertionError) as failure:
        platform.run_until_idle("latency", timeout=1.0)
    assert str(failure.value).endswith(
        "; it reads millstream.metrics, where each of its stops writes a record it has not "
        "read, so it is never idle: run it with running() and wait for what it writes")
