"""An output the producer refuses (too large) in a poll batch whose outputs go to several
streams: the refused one reports its input, and every other output is sent exactly once — the
ones already sent with ``send_batch`` before the refusal are not sent again."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

import millstream
from millstream._wellknown import EXCEPTIONS
from millstream.runtime import ServiceRunner
from millstream.runtime._failures import parse_exception
from millstream.service import App, Emit
from tests.service.test_runtime import Order, read_all, run_until, send_orders

LIMIT = 4096


class Note(BaseModel):
    order_id: int
    text: str


def test_an_output_refused_after_another_streams_outputs_were_sent_sends_each_once() -> None:
    app = App("split", partitions=1)

    @app.service(inputs={"orders": Order}, outputs={"small": Note, "large": Note})
    def split(order: Order) -> Emit:
        if order.id % 2:  # odd orders to "large"; order 5's note is over the limit
            return Emit("large", Note(order_id=order.id,
                                      text="x" * (LIMIT if order.id == 5 else 1)))
        return Emit("small", Note(order_id=order.id, text="y"))

    with millstream.open_streams(f"local:?max_record_bytes={LIMIT}") as streams:
        runner = ServiceRunner(app, "split", streams, metrics_interval_s=60)
        runner.prepare()
        send_orders(streams, [Order(id=i, total=0) for i in range(10)])
        run_until(runner, lambda r: r.metrics.records_in >= 10)
        small = Counter(Note.model_validate_json(r.value or b"").order_id
                        for r in read_all(streams, "small"))
        large = Counter(Note.model_validate_json(r.value or b"").order_id
                        for r in read_all(streams, "large"))
        assert small == {0: 1, 2: 1, 4: 1, 6: 1, 8: 1}  # each once, none sent twice
        assert large == {1: 1, 3: 1, 7: 1, 9: 1}
        (failure,) = [parse_exception(r) for r in read_all(streams, EXCEPTIONS)]
        assert failure.input["offset"] == 5
        assert runner.metrics.records_out == 9
        group = streams.admin().describe_group("split.split")
        assert [p.committed for p in group.partitions if p.stream == "orders"] == [10]
