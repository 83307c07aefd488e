"""Kafka: a group left behind by retention gets OffsetOutOfRangeError, not a silent jump.

Retention on Kafka runs in the brokers on their own schedule, so the test moves the log's
start with the admin API's delete-records (what retention does to old segments), then checks
that a group whose committed offset is now gone is told so, and can seek on.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

import millstream
from millstream import Record, Retention, StreamPartition

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("call", ["poll", "poll_batch"])
def test_a_group_behind_the_retained_start_gets_a_clear_error(kafka_bootstrap: str,
                                                              call: str) -> None:
    name = f"kretention-{uuid.uuid4().hex[:8]}"
    group = f"kretention-g-{uuid.uuid4().hex[:8]}"
    sp = StreamPartition(name, 0)
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        info = streams.admin().create_stream(name, retention=Retention(max_age=3600))
        assert info.retention.max_age == 3600 and info.retention.max_bytes is None
        with streams.open_producer() as producer:
            producer.send_batch(name, [f"{i}".encode() for i in range(10)]).wait(30)
        with streams.open_consumer(group) as consumer:
            consumer.subscribe([name])
            got: list[Record] = []
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                got.extend(consumer.poll(2 - len(got), timeout=0.5))
            consumer.commit()
            assert consumer.committed([sp]) == {sp: 2}
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        futures = admin.delete_records([TopicPartition(name, 0, 6)])
        for f in futures.values():
            f.result(30)
        assert streams.admin().describe_stream(name).partitions[0].start == 6
        behind = streams.admin().describe_group(group).partitions[0]
        assert (behind.committed, behind.start, behind.end, behind.lag) == (2, 6, 10, 4)
        with streams.open_consumer(group) as consumer:
            consumer.subscribe([name])
            poll = getattr(consumer, call)  # the same error through the batch call
            with pytest.raises(millstream.OffsetOutOfRangeError) as raised:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    poll(10, timeout=0.5)
            message = str(raised.value)
            assert repr(group) in message and f"{sp}" in message and "6..10" in message
            consumer.seek_to_beginning()
            records: list[Record] = []
            deadline = time.monotonic() + 30
            while len(records) < 4 and time.monotonic() < deadline:
                records.extend(poll(10, timeout=0.5))
            assert [r.offset for r in records] == [6, 7, 8, 9]
