"""An async service's partitions move to a second instance while records are in flight on
them: the first instance finishes its running records of the revoked partition, sends their
outputs and commits them before handing the partition over, so with no crash every input comes
out exactly once — none lost, none handled twice — and the group ends committed at the end
of every partition."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream.runtime import ServiceRunner
from millstream.service import App
from tests.service.test_runtime import Invoice, Order, read_all, send_orders
from tests.support.waiting import wait_until

N = 120


@pytest.mark.parametrize("processing", ["at-least-once", "exactly-once"])
def test_a_partition_revoked_with_records_in_flight_hands_over_each_record_once(
        tmp_path: Path, processing: str) -> None:
    app = App("handover", partitions=2, processing=processing)
    handled: Counter[tuple[str, int]] = Counter()
    # the records that start after the first ten stay in flight until the second instance is
    # in the group: the first then still has records in flight and left to read when it
    # hands a partition over (without this it could finish all 120, 0.4 s of work, before a
    # loaded machine let the second join, and the second would handle none)
    joined = threading.Event()
    began = [0]  # records started before the join (all on the first instance's loop)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice}, concurrency=16,
                 commit_interval=0.05)
    async def bill(order: Order) -> Invoice:
        if not joined.is_set():
            began[0] += 1
            while began[0] > 10 and not joined.is_set():
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        handled[threading.current_thread().name, order.id] += 1
        return Invoice(order_id=order.id, amount=order.total)

    # a session long enough that no stall of a heartbeat thread expires a member (its
    # partitions would then move without a revocation, and at-least-once may repeat records)
    url = f"local:{tmp_path}?session_timeout_ms=30000&heartbeat_interval_ms=100"
    with millstream.open_streams(url) as streams:
        first = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
        first.prepare()
        send_orders(streams, [Order(id=i, total=i) for i in range(N)])
        second = ServiceRunner(app, "bill", streams, metrics_interval_s=60)
        admin = streams.admin()

        def all_committed(_: ServiceRunner) -> bool:
            info = admin.describe_group("handover.bill")
            return sum(p.committed or 0 for p in info.partitions if p.stream == "orders") == N

        deadline = time.monotonic() + 60
        threads = [threading.Thread(target=r.run, name=name, kwargs={
            "until": lambda r: all_committed(r) or time.monotonic() > deadline})
            for name, r in (("first", first), ("second", second))]
        threads[0].start()
        while first.metrics.records_in < 10 and time.monotonic() < deadline:
            time.sleep(0.005)  # the first holds both partitions, records in flight on both
        threads[1].start()  # joins: one partition moves while records are in flight on it
        try:
            wait_until(lambda: len(admin.describe_group("handover.bill").members) == 2, 60,
                       "the second instance to join the group")
        finally:
            joined.set()
        for t in threads:
            t.join(90)
        assert all_committed(first)
        by_instance = Counter(name for name, _ in handled)
        assert by_instance["first"] > 0 and by_instance["second"] > 0, by_instance
        ids = Counter(i for _, i in handled)
        assert ids == dict.fromkeys(range(N), 1), [i for i, n in ids.items() if n != 1]
        out = Counter(Invoice.model_validate_json(r.value or b"").order_id
                      for r in read_all(streams, "invoices"))
        assert out == dict.fromkeys(range(N), 1)
