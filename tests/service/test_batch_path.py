"""The runner's batch path (``RecordHandler.bind``): records of a poll batch handled by index,
without a ``Record`` unless something needs one. What must hold on it as on the general path:
an output the producer refuses reports its own input, an exactly-once service's keyless output
stays on its input's partition number, a retried handler's last failure is recorded, and the
offsets committed are those of the records handled."""

from __future__ import annotations

from pydantic import BaseModel

import millstream
from millstream._wellknown import EXCEPTIONS
from millstream.runtime import ServiceRunner
from millstream.runtime._failures import parse_exception
from millstream.service import App, Emit, RetryPolicy
from tests.service.test_runtime import Invoice, Order, read_all, run_until, send_orders

LIMIT = 4096


class Bill(BaseModel):
    order_id: int
    note: str


def test_an_output_too_large_to_send_reports_its_own_input_and_the_others_go_on() -> None:
    app = App("big", partitions=1)

    @app.service(inputs={"orders": Order}, outputs={"bills": Bill})
    def billing(order: Order) -> Bill:  # no context: the batch path
        return Bill(order_id=order.id, note="x" * (LIMIT if order.id == 5 else 1))

    with millstream.open_streams(f"local:?max_record_bytes={LIMIT}") as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=0) for i in range(10)])
        run_until(runner, lambda r: r.metrics.records_in >= 10)
        assert sorted(Bill.model_validate_json(r.value or b"").order_id
                      for r in read_all(streams, "bills")) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        (failure,) = [parse_exception(r) for r in read_all(streams, EXCEPTIONS)]
        assert failure.document["stage"] == "encode"
        assert failure.input["offset"] == 5
        assert Order.model_validate_json(failure.value() or b"").id == 5
        assert "RecordTooLargeError" in failure.error_type
        group = streams.admin().describe_group("big.billing")
        assert [p.committed for p in group.partitions if p.stream == "orders"] == [10]


def test_an_exactly_once_keyless_output_stays_on_its_inputs_partition_number() -> None:
    app = App("keyless", partitions=3, processing="exactly-once")

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice})
    def billing(order: Order) -> Emit:
        return Emit("invoices", Invoice(order_id=order.id, amount=0), key=None)

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        with streams.open_producer() as producer:
            for i in range(12):
                producer.send("orders", Order(id=i, total=0).model_dump_json().encode(),
                              partition=i % 3, headers=(("content-type", b"application/json"),
                                                        ("schema", b"Order")))
        run_until(runner, lambda r: r.metrics.records_in >= 12)
        out = read_all(streams, "invoices")
        assert sorted((r.partition, Invoice.model_validate_json(r.value or b"").order_id)
                      for r in out) == sorted((i % 3, i) for i in range(12))


def test_a_handler_retried_on_the_batch_path_runs_the_policy_s_attempts_exactly() -> None:
    app = App("flaky", partitions=1)
    calls: dict[int, int] = {}

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice},
                 retry=RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.001))
    def billing(order: Order) -> Invoice:
        calls[order.id] = calls.get(order.id, 0) + 1
        if order.id == 2 or (order.id == 4 and calls[4] < 3):
            raise ValueError(f"attempt {calls[order.id]} of order {order.id}")
        return Invoice(order_id=order.id, amount=0)

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=0) for i in range(6)])
        run_until(runner, lambda r: r.metrics.records_in >= 6)
        assert calls == {0: 1, 1: 1, 2: 3, 3: 1, 4: 3, 5: 1}
        assert sorted(Invoice.model_validate_json(r.value or b"").order_id
                      for r in read_all(streams, "invoices")) == [0, 1, 3, 4, 5]
        (failure,) = [parse_exception(r) for r in read_all(streams, EXCEPTIONS)]
        assert (failure.document["stage"], failure.attempts) == ("handle", 3)
        assert failure.message == "attempt 3 of order 2"
        assert failure.document["error"]["traceback"].count("Traceback") == 1
