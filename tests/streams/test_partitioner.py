"""Key → partition must agree with Kafka's Java client (UtilsTest.testMurmur2 vectors)."""

from __future__ import annotations

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
