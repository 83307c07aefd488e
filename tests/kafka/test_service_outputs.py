"""A service's outputs on Kafka, which the runtime writes with ``write_batch`` (no handle per
record; the commit's flush acknowledges them): every output comes out once, an output too
large to send is reported as its own input's failure, and the offsets committed cover every
input."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from pydantic import BaseModel

import millstream
from millstream._wellknown import EXCEPTIONS
from millstream.runtime import ServiceRunner
from millstream.runtime._failures import parse_exception
from millstream.service import App
from tests.kafka.test_services import committed
from tests.service.test_runtime import Order, read_all, run_until, send_orders

pytestmark = pytest.mark.kafka

LIMIT = 4096
N = 300


class Bill(BaseModel):
    order_id: int
    note: str


def test_outputs_are_written_once_and_one_too_large_reports_its_own_input(
        kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = App(f"k{suffix}", partitions=3)
    orders, bills = f"orders-{suffix}", f"bills-{suffix}"

    @app.service(inputs={orders: Order}, outputs={bills: Bill}, max_batch=50)
    def billing(order: Order) -> Bill:
        return Bill(order_id=order.id, note="x" * (LIMIT if order.id == 123 else 1))

    with millstream.open_streams(
            f"kafka://{kafka_bootstrap}?millstream.max_record_bytes={LIMIT}") as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=0) for i in range(N)], stream=orders)
        run_until(runner, lambda r: r.metrics.records_in >= N, timeout=60)
        out = Counter(Bill.model_validate_json(r.value or b"").order_id
                      for r in read_all(streams, bills))
        assert out == Counter(i for i in range(N) if i != 123)  # each once
        failures = [parse_exception(r) for r in read_all(streams, EXCEPTIONS)
                    if r.key == app.get("billing").group.encode()]
        (failure,) = failures
        assert failure.document["stage"] == "encode"
        assert failure.error_type.endswith("RecordTooLargeError")
        assert Order.model_validate_json(failure.value() or b"").id == 123
        assert committed(streams, app.get("billing").group, orders) == N
        assert runner.metrics.records_out == N - 1
