"""What the streams Protocols describe: a stream's retention and retained range, a consumer
group's members and progress. Frozen values, defined here and named by ``_base``."""

from __future__ import annotations

from dataclasses import dataclass, field

from millstream.records import StreamPartition

__all__ = [
    "GroupInfo",
    "MemberInfo",
    "PartitionInfo",
    "PartitionLag",
    "Retention",
    "StreamInfo",
    "to_ms",
]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_ms(seconds: float) -> int:
    """A duration of the Python API (seconds) as the backends keep it (whole milliseconds)."""
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a stream keeps its records.

    The default keeps everything forever: streams are the system of record. ``max_age``
    (seconds) and ``max_bytes`` (per partition) delete the oldest records beyond the bound;
    whole stored batches go at once, so a little more than the bound may be kept. ``compact``
    keeps the latest record per key; a tombstone (value ``None``) removes its key, and is
    itself removed once it is ``tombstone_age`` seconds old. A partition's newest batch is
    never compacted (like Kafka's active segment), so a reader can always reach the end.
    Offsets never change; a compacted stream's offsets have gaps. Both backends keep ages in
    whole milliseconds (Kafka's ``retention.ms``, ``delete.retention.ms``).
    """

    max_age: float | None = None
    max_bytes: int | None = None
    compact: bool = False
    tombstone_age: float = 24 * 3600.0

    def __post_init__(self) -> None:
        from millstream.errors import InvalidRequestError

        if self.max_age is not None and not (_is_number(self.max_age)
                                             and self.max_age >= 0.001):
            raise InvalidRequestError(
                f"retention max_age={self.max_age!r} must be a number of seconds ≥ 0.001, or "
                "None for no bound"
            )
        if self.max_bytes is not None and (not isinstance(self.max_bytes, int)
                                           or isinstance(self.max_bytes, bool)
                                           or self.max_bytes <= 0):
            raise InvalidRequestError(
                f"retention max_bytes={self.max_bytes!r} must be a positive integer, or None "
                "for no bound"
            )
        if not _is_number(self.tombstone_age) or self.tombstone_age < 0:
            raise InvalidRequestError(
                f"retention tombstone_age={self.tombstone_age!r} must be a number of seconds ≥ 0"
            )

    @property
    def forever(self) -> bool:
        return self.max_age is None and self.max_bytes is None and not self.compact

    def describe(self) -> str:
        parts = []
        if self.max_age is not None:
            parts.append(f"age ≤ {self.max_age:g} s")
        if self.max_bytes is not None:
            parts.append(f"size ≤ {self.max_bytes} B/partition")
        if self.compact:
            parts.append("compacted")
        return ", ".join(parts) or "forever"


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition's retained range: offsets ``start`` (first kept) to ``end`` (next to write)."""

    partition: int
    start: int
    end: int
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's configuration and the retained range of each partition."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    retention: Retention = field(default_factory=Retention)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)

    @property
    def records(self) -> int:
        """Offsets retained over all partitions (an upper bound on compacted streams)."""
        return sum(p.end - p.start for p in self.partitions)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A live member of a consumer group."""

    member_id: str
    client: str
    streams: tuple[str, ...]
    partitions: tuple[StreamPartition, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """A group's progress on one partition: committed offset (None if never) and lag."""

    stream: str
    partition: int
    committed: int | None
    end: int
    owner: str | None
    start: int = 0

    @property
    def lag(self) -> int:
        """Records still to read: from the committed offset (or the retained start) to the end."""
        position = self.committed if self.committed is not None else self.start
        return max(self.end - max(position, self.start), 0)


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group: its members and, per partition, committed offset and lag."""

    name: str
    members: tuple[MemberInfo, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)
