"""The values that travel through streams: records, positions and partitions.

All three are ``NamedTuple`` subclasses. A consumer builds millions of records per second, and
a tuple subclass is built in C (``tuple.__new__``) for about a third of the cost of a frozen
dataclass, while remaining immutable, hashable, typed and readable by attribute.

A public module; ``Record``, ``Headers``, ``Position`` and ``StreamPartition`` are also at the
top level (``millstream.Record``).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Header", "Headers", "Position", "Record", "StreamPartition", "record_size"]

Header = tuple[str, bytes | None]
Headers = tuple[Header, ...]


class StreamPartition(NamedTuple):
    """One partition of a stream."""

    stream: str
    partition: int

    def __str__(self) -> str:
        return f"{self.stream}[{self.partition}]"


class Position(NamedTuple):
    """Where a record is stored: its stream, partition and offset."""

    stream: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.stream}[{self.partition}]@{self.offset}"


class Record(NamedTuple):
    """One record read from a stream.

    ``value`` is ``None`` for a tombstone (a deletion marker on compacted streams), which is
    distinct from ``b""``. ``timestamp`` is milliseconds since the Unix epoch, set by the
    producer. ``headers`` is a tuple of ``(name, value)`` pairs; names may repeat.
    """

    stream: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @property
    def position(self) -> Position:
        return Position(self.stream, self.partition, self.offset)


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    """The size the limit applies to: key + value + header names and values, as Kafka counts."""
    size = (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
    if headers:
        for name, hvalue in headers:
            size += len(name.encode()) + (len(hvalue) if hvalue is not None else 0)
    return size
