"""Helpers of the tables tests: a feed stream with upserts and tombstones, and its replay."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from millstream import Record, StreamPartition, Streams

COLOURS = ("red", "green", "blue")


def produce_feed(streams: Streams, stream: str, n: int, *, keys: int = 500, seed: int = 1,
                 start: int = 0) -> None:
    """``n`` records over ``keys`` keys: JSON objects, and a tombstone for about one in ten."""
    rng = random.Random(seed)
    values: list[bytes | None] = []
    ks: list[bytes | None] = []
    for i in range(start, start + n):
        k = f"k{rng.randrange(keys):05d}"
        ks.append(k.encode())
        if rng.random() < 0.1:
            values.append(None)
        else:
            values.append(json.dumps({"id": k, "n": i, "colour": rng.choice(COLOURS)}).encode())
    with streams.open_producer() as producer:
        for lo in range(0, n, 5000):
            producer.send_batch(stream, values[lo:lo + 5000], keys=ks[lo:lo + 5000])
        producer.flush(30)


def read_stream(streams: Streams, stream: str) -> list[Record]:
    info = streams.admin().describe_stream(stream)
    want = {StreamPartition(stream, p.partition): p.end for p in info.partitions}
    out: list[Record] = []
    with streams.open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 30
        while any(consumer.position(sp) < end for sp, end in want.items()):
            assert time.monotonic() < deadline, "could not read the stream to its end"
            out.extend(consumer.poll(10_000, timeout=0.2))
    return out


def replay(streams: Streams, stream: str,
           offsets: Mapping[StreamPartition, int] | None = None) -> dict[str, dict[str, Any]]:
    """The table the stream gives when replayed up to ``offsets`` (all of it when None)."""
    state: dict[str, dict[str, Any]] = {}
    for r in read_stream(streams, stream):
        if offsets is not None and r.offset >= offsets.get(StreamPartition(r.stream, r.partition),
                                                            0):
            continue
        assert r.key is not None
        if r.value is None:
            state.pop(r.key.decode(), None)
        else:
            state[r.key.decode()] = json.loads(r.value)
    return state
