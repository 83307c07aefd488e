"""Key → partition must agree with Kafka's Java client (UtilsTest.testMurmur2 vectors)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millstream.streams._partitioner import murmur2, partition_for_key

KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_uses_the_positive_hash() -> None:
    # toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16
    assert partition_for_key(b"foobar", 50) == 16
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


@given(st.binary(max_size=64), st.integers(1, 1000))
def test_partition_is_in_range_and_stable(key: bytes, n: int) -> None:
    p = partition_for_key(key, n)
    assert 0 <= p < n
    assert partition_for_key(key, n) == p
    assert -(2**31) <= murmur2(key) < 2**31


def test_a_batch_of_seen_and_new_keys_puts_each_key_where_kafka_would(tmp_path: Path) -> None:
    # the embedded log's producer remembers where keys went; a batch mixing keys it has seen
    # with new ones places every record by its own key's hash, in the order sent per partition
    import millstream

    first = [f"k{i}".encode() for i in range(0, 40)]
    mixed = [f"k{i}".encode() for i in range(20, 60)] + [b"k3", b"k59", b"new"]
    with millstream.open_streams(f"local:{tmp_path / 'log'}") as streams:
        streams.admin().create_stream("s", partitions=5)
        with streams.open_producer() as producer:
            producer.send_batch("s", [b"1"] * len(first), keys=first)
            producer.send_batch("s", [b"2"] * len(mixed), keys=mixed)
            producer.flush(30)
        with streams.open_consumer() as consumer:
            consumer.subscribe(["s"])
            got: list[tuple[int, bytes | None, bytes | None]] = []
            while len(got) < len(first) + len(mixed):
                got += [(r.partition, r.key, r.value) for r in consumer.poll(1000, 1.0)]
    assert len(got) == len(first) + len(mixed)
    for partition, key, _ in got:
        assert key is not None and partition == partition_for_key(key, 5), (key, partition)
    for p in range(5):  # per partition: the first batch's records, then the second's, in order
        sent = [(k, b"1") for k in first if partition_for_key(k, 5) == p] + \
            [(k, b"2") for k in mixed if partition_for_key(k, 5) == p]
        assert [(k, v) for q, k, v in got if q == p] == sent
