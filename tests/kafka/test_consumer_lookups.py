"""A Kafka consumer that has caught up finds offsets at once, however many partitions it owns.

While a consumer has nothing new to read, its connection to the leader is taken by a fetch
the broker holds for ``fetch.wait.max.ms`` (500 ms by default); a lookup sent on that
connection waits behind it. Before the fix ``seek``, ``seek_to_beginning``/``_end`` and
``lag`` asked on the consumer's connection, one partition at a time: ``seek_to_end`` of 12
caught-up partitions took 5.5 s, ``lag`` 6 s. They now ask on a connection of their own,
all partitions in one request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

import millstream
from millstream import StreamPartition

pytestmark = pytest.mark.kafka

PARTITIONS = 12
#: what a lookup of every partition may take: a few fetch waits, for a loaded machine (it
#: takes well under one); each partition's own wait behind the fetch (before the fix) added
#: up to 5.5 s and more
BOUND_S = 3.0


def test_seeks_and_lag_of_a_caught_up_consumer_do_not_wait_for_its_fetch(
        kafka_bootstrap: str) -> None:
    stream = f"lookups-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        streams.admin().create_stream(stream, PARTITIONS)
        with streams.open_producer() as producer:
            for p in range(PARTITIONS):
                producer.send_batch(stream, [b"x"] * (p + 1), partition=p)
        owned = [StreamPartition(stream, p) for p in range(PARTITIONS)]
        with streams.open_consumer() as consumer:
            consumer.subscribe([stream])
            got, deadline = 0, time.monotonic() + 60
            while got < sum(range(1, PARTITIONS + 1)):
                assert time.monotonic() < deadline, f"read {got} records"
                got += len(consumer.poll(1000, timeout=0.5))
            consumer.poll(10, timeout=1.0)  # caught up: its fetches now wait at the broker

            timings: dict[str, float] = {}

            def timed(what: str, call: Callable[[], object]) -> None:
                t0 = time.monotonic()
                call()
                timings[what] = time.monotonic() - t0

            timed("seek_to_beginning", consumer.seek_to_beginning)
            assert [consumer.position(sp) for sp in owned] == [0] * PARTITIONS
            timed("lag", consumer.lag)
            assert consumer.lag() == {sp: sp.partition + 1 for sp in owned}
            timed("seek_to_end", consumer.seek_to_end)
            assert [consumer.position(sp) for sp in owned] == [p + 1 for p in range(PARTITIONS)]

            def seek_each() -> None:
                for sp in owned:
                    consumer.seek(sp, sp.partition)

            timed(f"seek x{PARTITIONS}", seek_each)
            assert [consumer.position(sp) for sp in owned] == list(range(PARTITIONS))
            assert consumer.lag() == dict.fromkeys(owned, 1)
        print({what: round(s, 3) for what, s in timings.items()})
        slow = {what: round(s, 2) for what, s in timings.items() if s >= BOUND_S}
        assert slow == {}, f"lookups waited for the consumer's fetch: {slow}"
        streams.admin().delete_stream(stream)
