"""The delivery modes' commit hook (``Delivery.on_commit``), in every mode on the embedded log:
a listener runs right after each successful commit, when the outputs of every committed
record are durable and the offsets it is given are the group's committed offsets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import millstream
from millstream.records import StreamPartition
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from tests.service.test_runtime import Invoice, Order, run_until, send_orders

N = 120

MODES = {  # mode -> (stateful, exactly_once)
    "at-least-once": (False, False),
    "checkpointed": (True, False),
    "transactional": (True, True),
}


def billing_app(mode: str) -> App:
    stateful, exactly_once = MODES[mode]
    app = App("hooks", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice}, stateful=stateful,
                 exactly_once=exactly_once, max_batch=10, commit_interval=0.001,
                 checkpoint_records=25)
    def bill(order: Order, ctx: Context) -> Invoice:
        if stateful:
            ctx.state["count"] = ctx.state.get("count", 0) + 1
        return Invoice(order_id=order.id, amount=order.total)

    return app


@pytest.mark.parametrize("mode", list(MODES))
def test_a_commit_listener_runs_after_each_commit_with_the_outputs_durable(mode: str) -> None:
    app = billing_app(mode)
    calls: list[dict[StreamPartition, int]] = []
    with millstream.open_streams() as streams:
        admin = streams.admin()

        def listener(offsets: object) -> None:
            assert isinstance(offsets, dict)
            calls.append(dict(offsets))
            committed = {(p.stream, p.partition): p.committed
                         for p in admin.describe_group("hooks.bill").partitions}
            for sp, offset in offsets.items():  # already the group's committed offsets
                assert committed[sp.stream, sp.partition] == offset
            # every order up to the committed offsets has its invoice stored, and no more
            orders = sum(o or 0 for (s, _), o in committed.items() if s == "orders")
            assert admin.describe_stream("invoices").records == orders

        runner = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
        runner.delivery.on_commit(listener)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=i) for i in range(N)])
        run_until(runner, lambda r: r.metrics.records_in >= N)
        final = {(p.stream, p.partition): p.committed
                 for p in admin.describe_group("hooks.bill").partitions}
    assert len(calls) >= 2  # several commits along the way, and the last one at the stop
    seen: dict[StreamPartition, int] = {}
    for offsets in calls:
        seen.update(offsets)
    assert {(sp.stream, sp.partition): o for sp, o in seen.items()} == {
        k: v for k, v in final.items() if k[0] == "orders"}
    assert sum(seen.values()) == N


def test_a_listener_that_fails_stops_the_service_after_its_commit() -> None:
    app = billing_app("at-least-once")

    class Refused(Exception):
        pass

    def listener(offsets: object) -> None:
        raise Refused("the table could not be written")

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
        runner.delivery.on_commit(listener)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=i) for i in range(N)])
        with pytest.raises(Refused):
            run_until(runner, lambda r: False)
        committed = sum(p.committed or 0 for p in
                        streams.admin().describe_group("hooks.bill").partitions)
        invoices = streams.admin().describe_stream("invoices").records
    # the commit the listener followed stands, with the output of every input it committed
    # durable (the runner's records_in counter is only brought up to date at a batch's end, so
    # a commit in the middle of a batch is checked against the outputs instead)
    assert 0 < committed <= N
    assert invoices >= committed


def test_only_the_delivery_package_reads_a_services_delivery_flags() -> None:
    runtime = Path(millstream.__file__).parent / "runtime"
    readers = sorted(str(path.relative_to(runtime)) for path in runtime.rglob("*.py")
                     if re.search(r"\.(exactly_once|stateful)\b", path.read_text()))
    assert readers == ["_delivery/__init__.py"]
