"""Key → partition with Kafka's murmur2 partitioner, so keys land where Java clients put them.

Kafka's default partitioner for a keyed record is ``toPositive(murmur2(key)) % partitions``
with the 32-bit murmur2 variant below (seed ``0x9747b28c``). The Kafka backend sets
``partitioner=murmur2_random`` so librdkafka agrees; the embedded log calls this module.
"""

from __future__ import annotations

import sys

__all__ = ["murmur2", "partition_for_key"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_LITTLE = sys.byteorder == "little"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (as the Java client returns)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - (length & 3)
    # the 4-byte blocks as little-endian words: one memoryview cast, not a bytes slice each
    words = (memoryview(data)[:end].cast("I") if _LITTLE and end
             else (int.from_bytes(data[i : i + 4], "little") for i in range(0, end, 4)))
    for k in words:
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner chooses for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
