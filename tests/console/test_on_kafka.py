"""The console on Kafka: a service runs on a real broker and writes its metrics there; a
console started afterwards replays them from the broker by time and shows the service, its
streams with exact offsets, and its records decoded — the same pages as on the embedded log,
served from Kafka's answers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx2
import pytest
from pydantic import BaseModel

import millstream
from millstream import Streams
from millstream.console import ServedConsole, create_app
from millstream.runtime import ServiceRunner
from millstream.service import App
from tests.service.test_runtime import Order, run_until, send_orders

pytestmark = pytest.mark.kafka

N = 40


class Bill(BaseModel):
    order_id: int
    total: float


@pytest.fixture(scope="module")
def system(kafka_bootstrap: str) -> Iterator[tuple[App, Streams, str]]:
    suffix = uuid.uuid4().hex[:8]
    app = App(f"k{suffix}", partitions=2)
    orders, bills = f"orders-{suffix}", f"bills-{suffix}"

    @app.service(inputs={orders: Order}, outputs={bills: Bill}, max_batch=10)
    def billing(order: Order) -> Bill:
        return Bill(order_id=order.id, total=order.total)

    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=0.5)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=float(i)) for i in range(N)], stream=orders)
        run_until(runner, lambda r: r.metrics.records_out >= N, timeout=60)
        yield app, streams, suffix


def test_the_console_on_kafka_replays_the_metrics_and_shows_streams_and_records(
        system: tuple[App, Streams, str], kafka_bootstrap: str) -> None:
    app, _, suffix = system
    group = app.get("billing").group
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        console = create_app(streams, streams_url=f"kafka://{kafka_bootstrap}")
        history = console.state.console.history
        try:
            deadline = time.monotonic() + 60
            while group not in history.groups():
                assert time.monotonic() < deadline, f"no metrics of {group} read back"
                time.sleep(0.2)
            records = history.records(group)
            assert sum(r.interval.records_in for r in records) == N
            assert records[-1].final and records[-1].totals.records_out == N
            with ServedConsole(console) as served:
                listed = httpx2.get(f"{served.url}/api/streams", timeout=30).json()
                names = {s["name"] for s in listed["streams"]}
                assert {f"orders-{suffix}", f"bills-{suffix}"} <= names
                answer = httpx2.get(f"{served.url}/api/streams/bills-{suffix}",
                                    params={"after": "0:0,1:0"}, timeout=30).json()
                parts = answer["stream"]["partitions"]
                assert sum(p["end"] - p["start"] for p in parts) == N
                assert {r["value"]["kind"] for r in answer["records"]} == {"json"}
                shown = sorted(json.loads(r["value"]["text"])["order_id"]
                               for r in answer["records"])
                assert shown == list(range(N))
        finally:
            console.state.console.close()
