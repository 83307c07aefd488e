"""Interoperability: what millstream writes to Kafka is plain Kafka, and the reverse.

A plain confluent-kafka consumer reads millstream's records (key, value, headers, timestamp,
partition and offset exactly as millstream acknowledged them), millstream reads what a plain
producer wrote, and keys land on the partition that Kafka's Java client — and millstream's
embedded log — choose.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import millstream
from millstream import Record, StreamPartition
from millstream.streams._partitioner import partition_for_key

pytestmark = pytest.mark.kafka


def _plain_read(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"plain-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: list[Any] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(out) < n:
            assert time.monotonic() < deadline, f"the plain consumer read {len(out)} of {n}"
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_a_plain_consumer_reads_what_millstream_wrote(kafka_bootstrap: str) -> None:
    name = f"interop-out-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        streams.admin().create_stream(name, partitions=4)
        sent = [
            (b"order-1", b'{"total": 12.5}', (("content-type", b"application/json"),),
             1_700_000_000_001),
            (b"order-2", b"", (("trace", None), ("trace", b"x")), 1_700_000_000_002),
            (b"order-1", None, (), 1_700_000_000_003),  # a tombstone
            (None, b"no key", (), 1_700_000_000_004),
        ]
        with streams.open_producer() as producer:
            positions = [
                producer.send(name, value, key=key, headers=headers, timestamp=ts).wait(30)
                for key, value, headers, ts in sent
            ]
    messages = _plain_read(kafka_bootstrap, name, len(sent))
    by_offset = {(m.partition(), m.offset()): m for m in messages}
    for (key, value, headers, ts), pos in zip(sent, positions, strict=True):
        m = by_offset[(pos.partition, pos.offset)]
        assert m.key() == key and m.value() == value
        assert m.timestamp()[1] == ts
        assert tuple(m.headers() or ()) == headers
        if key is not None:
            assert pos.partition == partition_for_key(key, 4)


def test_millstream_reads_what_a_plain_producer_wrote(kafka_bootstrap: str) -> None:
    name = f"interop-in-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        streams.admin().create_stream(name, partitions=3)
        plain = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
        delivered: list[tuple[int, int]] = []
        for i in range(30):
            plain.produce(name, f"value-{i}".encode(), key=f"key-{i % 7}".encode(),
                          headers=[("seq", str(i).encode())], timestamp=1_700_000_000_000 + i,
                          on_delivery=lambda err, msg: delivered.append(
                              (msg.partition(), msg.offset())))
        assert plain.flush(30) == 0
        records: list[Record] = []
        with streams.open_consumer() as consumer:
            consumer.subscribe([name])
            deadline = time.monotonic() + 30
            while len(records) < 30 and time.monotonic() < deadline:
                records.extend(consumer.poll(100, timeout=0.5))
    assert sorted((r.partition, r.offset) for r in records) == sorted(delivered)
    for r in records:
        i = int(dict(r.headers)["seq"] or b"")
        assert r.value == f"value-{i}".encode() and r.key == f"key-{i % 7}".encode()
        assert r.timestamp == 1_700_000_000_000 + i
        assert r.partition == partition_for_key(r.key, 3)  # murmur2_random = Java's placement
    for p in range(3):
        seqs = [int(dict(r.headers)["seq"] or b"") for r in records if r.partition == p]
        assert seqs == sorted(seqs)


def test_keys_land_on_the_same_partitions_as_in_the_embedded_log(
        kafka_bootstrap: str, tmp_path: object) -> None:
    keys = [f"customer-{i}".encode() for i in range(200)]
    placements = {}
    for url in (f"kafka://{kafka_bootstrap}", f"local:{tmp_path}/log"):
        name = f"placement-{uuid.uuid4().hex[:8]}"
        with millstream.open_streams(url) as streams:
            streams.admin().create_stream(name, partitions=12)
            with streams.open_producer() as producer:
                handle = producer.send_batch(name, [b"v"] * len(keys), keys=keys)
                placements[url.split(":")[0]] = [p.partition for p in handle.wait(60)]
    assert placements["kafka"] == placements["local"]
    assert placements["kafka"] == [partition_for_key(k, 12) for k in keys]
    assert len(set(placements["kafka"])) == 12


def test_group_offsets_committed_by_millstream_are_the_groups_kafka_offsets(
        kafka_bootstrap: str) -> None:
    name = f"interop-offsets-{uuid.uuid4().hex[:8]}"
    group = f"interop-g-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(f"kafka://{kafka_bootstrap}") as streams:
        streams.admin().create_stream(name, partitions=1)
        with streams.open_producer() as producer:
            producer.send_batch(name, [f"{i}".encode() for i in range(10)], partition=0).wait(30)
        with streams.open_consumer(group) as consumer:
            consumer.subscribe([name])
            got: list[Record] = []
            deadline = time.monotonic() + 30
            while len(got) < 6 and time.monotonic() < deadline:
                got.extend(consumer.poll(6 - len(got), timeout=0.5))
            consumer.commit({StreamPartition(name, 0): 6})
    plain = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                      "enable.auto.commit": False})
    try:
        (tp,) = plain.committed([TopicPartition(name, 0)], timeout=30)
        assert tp.offset == 6
    finally:
        plain.close()
