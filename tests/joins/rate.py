"""A rough rate of the stream–table join on the embedded log (not a test; issue 14 asks
≥ 100 K records/s per process): ``python -m tests.joins.rate [orders] [items]``.

Writes ``items`` rows and then ``orders`` orders keyed by item into a fresh log (one
partition per stream, process durability), runs the join in this process until it has read
every order, and prints records per second of that run (the orders and the rows). The rows
are in the join's state, checkpointed whole every 10,000 records: a larger table costs more
per checkpoint (states over 256 KiB go to the file store)."""

from __future__ import annotations

import sys
import tempfile
import time

import millstream
from millstream.codecs import ModelCodec
from millstream.runtime import ServiceRunner
from millstream.service import App
from tests.joins.apps import Item, Line, Order, line


def main(orders: int = 200_000, items: int = 1_000) -> float:
    app = App("rate", partitions=1)
    order_stream = app.stream("orders", Order)
    item_stream = app.stream("items", Item)
    app.join_table("titles", order_stream, item_stream, line, output=app.stream("lines", Line))
    with tempfile.TemporaryDirectory() as home, \
            millstream.open_streams(f"local:{home}?durability=process") as streams:
        for name in ("orders", "items"):
            streams.admin().ensure_stream(name, 1)
        with streams.open_producer() as producer:
            codec = ModelCodec(Item)
            keys = [f"item-{i}".encode() for i in range(items)]
            producer.write_batch("items", [codec.encode(Item(title=f"title {i}"))[0]
                                           for i in range(items)],
                                 keys=keys, headers=[codec.headers] * items)
            codec_o = ModelCodec(Order)
            for start in range(0, orders, 10_000):
                chunk = range(start, min(start + 10_000, orders))
                producer.write_batch(
                    "orders", [codec_o.encode(Order(id=n, item=f"item-{n % items}"))[0]
                               for n in chunk],
                    keys=[keys[n % items] for n in chunk], headers=[codec_o.headers] * len(chunk))
            producer.flush()
        files = millstream.open_files(f"file://{home}/files")  # for states over 256 KiB
        runner = ServiceRunner(app, "titles", streams, files=files)
        total = orders + items
        began = time.perf_counter()
        runner.run(until=lambda r: r.statistics().records_in >= total)
        took = time.perf_counter() - began
        joined = streams.admin().describe_stream("lines").records
        assert joined == orders, (joined, orders)
    rate = total / took
    print(f"stream–table join: {total:,} records in {took:.2f} s = {rate:,.0f} records/s")
    return rate


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
