"""``send()``'s handles name the position where their own record was stored.

The Kafka producer matches an idempotent producer's delivery reports to ``send()``'s handles
by order (one shared callback per thread and partition, see ``_Lane`` in
``streams/kafka/producer.py``). These tests read every record back and check that each
handle's position holds the value it sent: over many chunks, from several threads at once,
keyless and to explicit partitions, mixed with keyed records and batches, through a full
local queue, and with a record the broker refuses between good ones.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import millstream
from millstream import Position
from millstream.errors import DeliveryError

pytestmark = pytest.mark.kafka


@pytest.fixture
def streams(kafka_bootstrap: str) -> Iterator[millstream.Streams]:
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as s:
        yield s


def _stream(streams: millstream.Streams, partitions: int) -> str:
    name = f"handles-{uuid.uuid4().hex[:8]}"
    streams.admin().create_stream(name, partitions=partitions)
    return name


def _stored(streams: millstream.Streams, name: str, n: int) -> dict[Position, bytes | None]:
    """Every record of ``name`` by position (exactly ``n`` are expected)."""
    out: dict[Position, bytes | None] = {}
    with streams.open_consumer() as consumer:
        consumer.subscribe([name])
        deadline = time.monotonic() + 60
        while len(out) < n:
            assert time.monotonic() < deadline, f"read {len(out)} of {n} records"
            for r in consumer.poll(max_records=5_000, timeout=0.5):
                out[r.position] = r.value
    assert len(out) == n
    return out


def _check(streams: millstream.Streams, name: str,
           sent: list[tuple[Callable[[], Position], bytes]]) -> None:
    positions = [wait() for wait, _ in sent]
    assert len(set(positions)) == len(positions), "two handles name the same position"
    stored = _stored(streams, name, len(sent))
    wrong = [(p, v) for p, (_, v) in zip(positions, sent, strict=True) if stored[p] != v]
    assert not wrong, f"{len(wrong)} handles name another record's position, e.g. {wrong[0]}"


def test_each_handle_names_its_own_record_over_many_chunks(
        streams: millstream.Streams) -> None:
    name = _stream(streams, 3)
    sent: list[tuple[Callable[[], Position], bytes]] = []
    with streams.open_producer() as producer:
        for i in range(5_000):
            value = b"v%d" % i
            if i % 7 == 0:
                h = producer.send(name, value, partition=i % 3)
            elif i % 11 == 0:
                h = producer.send(name, value, key=b"k%d" % i)  # keyed: its own callback
            elif i % 13 == 0:
                h = producer.send(name, value, headers=(("n", b"%d" % i),), timestamp=1000 + i)
            else:
                h = producer.send(name, value)
            sent.append((h.wait, value))
            if i % 1_000 == 999:
                batch = [b"b%d-%d" % (i, j) for j in range(10)]
                positions = producer.send_batch(name, batch).wait(30)
                sent += [(lambda p=p: p, v) for p, v in zip(positions, batch, strict=True)]
        producer.flush()
    # keyless records spread over the partitions in runs
    assert len({p.partition for p in (w() for w, _ in sent)}) == 3
    _check(streams, name, sent)


def test_handles_stay_right_when_several_threads_send_to_one_partition(
        streams: millstream.Streams) -> None:
    name = _stream(streams, 2)
    sent: list[tuple[Callable[[], Position], bytes]] = []
    lock = threading.Lock()
    with streams.open_producer() as producer:

        def sender(t: int) -> None:
            mine = []
            for i in range(3_000):
                value = b"t%d-%d" % (t, i)
                h = producer.send(name, value, partition=0 if i % 2 else None)
                mine.append((h.wait, value))
                if i % 500 == 0:
                    h.wait(30)  # waiting while other threads send and serve callbacks
            with lock:
                sent.extend(mine)

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        producer.flush()
    _check(streams, name, sent)


def test_a_full_local_queue_does_not_shift_handles(kafka_bootstrap: str) -> None:
    url = f"kafka://{kafka_bootstrap}?queue.buffering.max.messages=300"
    with millstream.open_streams(url) as streams:
        name = _stream(streams, 1)
        sent = []
        with streams.open_producer() as producer:
            for i in range(4_000):
                value = b"q%d" % i
                sent.append((producer.send(name, value).wait, value))
        _check(streams, name, sent)


def test_a_record_the_broker_refuses_fails_alone(kafka_bootstrap: str,
                                                 streams: millstream.Streams) -> None:
    name = f"handles-small-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1, config={
            "max.message.bytes": "2000"})]).values():
        future.result(60)
    with streams.open_producer() as producer:
        first = producer.send(name, b"first")
        assert first.wait(30) == Position(name, 0, 0)
        refused = producer.send(name, b"x" * 5_000)  # under millstream's limit, over the topic's
        with pytest.raises(DeliveryError):
            refused.wait(30)
        assert refused.done()
        after = [producer.send(name, b"after%d" % i) for i in range(3)]
        positions = [h.wait(30) for h in after]
        with pytest.raises(DeliveryError):
            producer.flush()  # the refused record is reported once more, by flush()
    assert [p.partition for p in positions] == [0, 0, 0]
    stored = _stored(streams, name, 4)
    assert [stored[p] for p in positions] == [b"after0", b"after1", b"after2"]
    assert stored[Position(name, 0, 0)] == b"first"
