"""Slow records do not wait for their batch: a handler that takes longer than the commit
interval has each record's outputs sent and its offset committed while the rest of the poll
batch is still being handled — a video that is transcoded is ready at once, not when the
last upload of the batch is done, and a crash does not redo it."""

from __future__ import annotations

import time

import millstream
from millstream.runtime import ServiceRunner
from millstream.service import App
from tests.service.test_runtime import Invoice, Order, read_all, run_until, send_orders

SLOW_S = 0.3  # above the default commit interval (200 ms)


def test_a_slow_records_outputs_and_offset_are_committed_before_the_batch_ends() -> None:
    app = App("slow", partitions=1)
    seen: list[tuple[int, int, int]] = []  # (order, outputs visible, offset committed)

    with millstream.open_streams() as watcher:
        @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice})
        def bill(order: Order) -> Invoice:
            admin = watcher.admin()
            visible = admin.describe_stream("invoices").records
            [part] = [p for p in admin.describe_group("slow.bill").partitions
                      if p.stream == "orders"]
            seen.append((order.id, visible, part.committed or 0))
            time.sleep(SLOW_S)
            return Invoice(order_id=order.id, amount=order.total)

        with millstream.open_streams() as streams:
            runner = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
            runner.prepare()
            send_orders(streams, [Order(id=i, total=i) for i in range(4)])  # one poll batch
            run_until(runner, lambda r: r.metrics.records_in >= 4)
            invoices = [Invoice.model_validate_json(r.value or b"")
                        for r in read_all(streams, "invoices")]
    # each record saw every earlier one's invoice stored and its offset committed
    assert seen == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert [i.order_id for i in invoices] == [0, 1, 2, 3]  # all sent, once, in order
