"""``ctx.output_stream``: where a handler's own sends go, so a shadow's stay out of production."""

from __future__ import annotations

import pytest

import millstream
from millstream import Producer
from millstream.codecs import ModelCodec
from millstream.errors import InvalidRequestError
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from tests.service.test_runtime import Invoice, Order, read_all, run_until, send_orders


def make(sent: list[str]) -> App:
    """A billing service that sends every invoice with a producer of its own."""
    app = App("direct", partitions=1)
    codec = ModelCodec(Invoice)

    def opened(ctx: Context) -> Producer:
        return ctx.streams.open_producer()  # closed when the service stops

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice}, lifespan=opened)
    def billing(order: Order, ctx: Context, producer: Producer) -> None:
        stream = ctx.output_stream("invoices")
        sent.append(stream)
        data, headers = codec.encode(Invoice(order_id=order.id, amount=order.total))
        producer.send(stream, data, key=ctx.key, headers=headers).wait(5)

    return app


def test_production_sends_to_the_stream_and_a_shadow_to_its_shadow_stream() -> None:
    sent: list[str] = []
    app = make(sent)
    with millstream.open_streams() as streams:
        production = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        production.prepare()
        send_orders(streams, [Order(id=i, total=i * 1.5) for i in range(3)])
        run_until(production, lambda r: r.metrics.records_in >= 3)
        shadow = ServiceRunner(app, "billing", streams, shadow="v2", metrics_interval_s=60)
        run_until(shadow, lambda r: r.metrics.records_in >= 3)

        assert sent == ["invoices"] * 3 + ["invoices.shadow.v2"] * 3
        for stream in ("invoices", "invoices.shadow.v2"):
            got = [Invoice.model_validate_json(r.value or b"") for r in read_all(streams, stream)]
            assert [(i.order_id, i.amount) for i in got] == [(0, 0.0), (1, 1.5), (2, 3.0)]


def test_a_name_that_is_not_an_output_is_refused() -> None:
    app = make([])
    with millstream.open_streams() as streams:
        ctx = ServiceRunner(app, "billing", streams, shadow="v2").ctx
        assert ctx.output_stream("invoices") == "invoices.shadow.v2"
        with pytest.raises(InvalidRequestError,
                           match=r"has no output 'orders'; its outputs: invoices$"):
            ctx.output_stream("orders")
