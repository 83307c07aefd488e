"""A service's output that Kafka refuses at delivery (over the output topic's own
``max.message.bytes``, under millstream's limit, so nothing refuses it at the call): the
service stops with the error and the group's committed offset never passes the input whose
output was refused — in every delivery mode and for an async handler — and every input below
the committed offset has its output stored."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel

import millstream
from millstream.errors import MillstreamError
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from tests.kafka.test_services import url
from tests.service.test_runtime import Order, read_all, run_until, send_orders

pytestmark = pytest.mark.kafka

N = 60
REFUSED = 30  # the order whose note the topic refuses


class Note(BaseModel):
    order_id: int
    text: str


def note(order: Order) -> Note:
    return Note(order_id=order.id, text="x" * (5_000 if order.id == REFUSED else 10))


def make_app(mode: str, suffix: str) -> App:
    app = App(f"refuse{suffix}", partitions=1)
    inputs, outputs = {f"orders-{suffix}": Order}, {f"notes-{suffix}": Note}
    if mode == "async":
        @app.service(inputs=inputs, outputs=outputs, concurrency=8, commit_interval=0.01)
        async def write(order: Order) -> Note:
            await asyncio.sleep(0.02)
            return note(order)
    else:
        stateful, exactly_once = {"at-least-once": (False, False),
                                  "checkpointed": (True, False),
                                  "transactional": (True, True)}[mode]

        @app.service(inputs=inputs, outputs=outputs, stateful=stateful,
                     exactly_once=exactly_once, max_batch=10, commit_interval=0.01,
                     checkpoint_records=5)
        def write(order: Order, ctx: Context) -> Note:  # type: ignore[misc]
            if stateful:
                ctx.state["n"] = ctx.state.get("n", 0) + 1
            return note(order)
    return app


@pytest.mark.parametrize("mode", ["at-least-once", "checkpointed", "transactional", "async"])
def test_an_output_kafka_refuses_stops_the_service_before_its_input_is_committed(
        kafka_bootstrap: str, mode: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(f"notes-{suffix}", 1, 1, config={
            "max.message.bytes": "2000"})]).values():
        future.result(60)
    app = make_app(mode, suffix)
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        runner = ServiceRunner(app, "write", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=0) for i in range(N)], f"orders-{suffix}")
        with pytest.raises(MillstreamError):
            run_until(runner, lambda r: False, timeout=60)
        group = streams.admin().describe_group(f"refuse{suffix}.write")
        committed = sum(p.committed or 0 for p in group.partitions
                        if p.stream == f"orders-{suffix}")  # none: nothing was committed
        assert committed <= REFUSED
        stored = {Note.model_validate_json(r.value or b"").order_id
                  for r in read_all(streams, f"notes-{suffix}")}
        assert REFUSED not in stored
        assert set(range(committed)) <= stored  # every committed input has its output
