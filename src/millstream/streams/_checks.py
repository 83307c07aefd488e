"""Argument checks every backend applies the same way, so both give the same errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from millstream.errors import InvalidRequestError, OffsetOutOfRangeError, RecordTooLargeError
from millstream.records import Headers, StreamPartition

__all__ = [
    "ResetTo",
    "check_batch",
    "check_commit_offset",
    "check_offset",
    "check_poll",
    "check_reset_partitions",
    "check_reset_target",
    "check_timestamp",
    "reset_offset_for",
    "stream_names",
]

#: Where ``Admin.reset_offsets`` moves a group: the retained start, the end, one offset for
#: every partition, or an offset per partition number (e.g. found by time).
ResetTo = Literal["earliest", "latest"] | int | Mapping[int, int]


def stream_names(streams: Iterable[str] | str) -> list[str]:
    """The sorted, distinct names ``subscribe`` was given (a lone string is one name)."""
    names = sorted(set([streams] if isinstance(streams, str) else streams))
    if not names:
        raise InvalidRequestError("subscribe needs at least one stream name")
    return names


def check_poll(subscribed: bool, max_records: int, timeout: float) -> None:
    """``poll``'s preconditions."""
    if not subscribed:
        raise InvalidRequestError("poll before subscribe: call subscribe([...]) first")
    if type(max_records) is not int or max_records < 1:
        raise InvalidRequestError(f"max_records={max_records!r}: give an integer ≥ 1")
    if timeout < 0:
        raise InvalidRequestError(f"timeout={timeout!r}: give seconds ≥ 0")


def check_offset(offset: object, where: StreamPartition) -> int:
    """A seek target: an int ≥ 0 (the range check needs the backend)."""
    if type(offset) is not int or offset < 0:
        raise InvalidRequestError(f"offset {offset!r} for {where}: give an integer ≥ 0")
    return offset


def check_commit_offset(offset: object, where: StreamPartition) -> int:
    """A next offset to commit: an int ≥ 0."""
    if type(offset) is not int or offset < 0:
        raise InvalidRequestError(f"commit offset {offset!r} for {where}: give an int ≥ 0")
    return offset


def check_timestamp(timestamp_ms: object) -> int:
    """A time to seek to: milliseconds since the epoch, an int ≥ 0."""
    if type(timestamp_ms) is not int or timestamp_ms < 0:
        raise InvalidRequestError(
            f"timestamp {timestamp_ms!r}: give milliseconds since the epoch as an int ≥ 0")
    return timestamp_ms


def check_batch(stream: str, values: Sequence[bytes | None],
                keys: Sequence[bytes | None] | None, headers: Sequence[Headers] | None,
                limit: int) -> list[int]:
    """Each record's size for ``send_batch``; refuses the whole batch if one is invalid."""
    n = len(values)
    for name, column in (("keys", keys), ("headers", headers)):
        if column is not None and len(column) != n:
            raise InvalidRequestError(
                f"send_batch got {n} values but {len(column)} {name}; give one per value"
            )
    if keys is None and headers is None:
        sizes = [len(v) if v is not None else 0 for v in values]
    elif headers is None:
        assert keys is not None
        sizes = [(len(v) if v is not None else 0) + (len(k) if k is not None else 0)
                 for v, k in zip(values, keys, strict=True)]
    else:
        sizes = []
        last: Headers | None = None
        last_size = 0
        for i in range(n):
            value = values[i]
            size = len(value) if value is not None else 0
            if keys is not None:
                key = keys[i]
                if key is not None:
                    size += len(key)
            record_headers = headers[i]
            if record_headers is not last:  # typed payloads share one headers tuple
                last, last_size = record_headers, 0
                for name, hvalue in record_headers:
                    # as record_size counts: UTF-8 bytes of the name (ASCII: one per character)
                    last_size += len(name) if name.isascii() else len(name.encode())
                    if hvalue is not None:
                        last_size += len(hvalue)
            sizes.append(size + last_size)
    largest = max(sizes, default=0)
    if largest > limit:
        raise RecordTooLargeError(largest, limit, stream)
    return sizes


def check_reset_target(group: str, to: object) -> None:
    """``reset_offsets``' target, before the backend looks at the stream."""
    if isinstance(to, Mapping):
        for p, off in to.items():
            if type(p) is not int or p < 0 or type(off) is not int or off < 0:
                raise InvalidRequestError(
                    f"reset offsets of group {group!r}: partition {p!r} -> offset {off!r}: give "
                    "integers ≥ 0")
        return
    if to not in ("earliest", "latest") and (type(to) is not int or to < 0):
        raise InvalidRequestError(
            f"reset offsets of group {group!r} to {to!r}: give 'earliest', 'latest', an "
            "offset (an integer ≥ 0) or offsets per partition"
        )


def check_reset_partitions(stream: str, to: ResetTo, partitions: int) -> None:
    """A per-partition target must name every partition of the stream, and only those."""
    if isinstance(to, Mapping) and set(to) != set(range(partitions)):
        raise InvalidRequestError(
            f"offsets per partition for {stream!r} name partitions {sorted(to)}, but the stream "
            f"has partitions 0..{partitions - 1}; give one offset for each")


def reset_offset_for(stream: str, partition: int, start: int, end: int, to: ResetTo) -> int:
    """The offset ``to`` means for one partition whose retained range is ``start..end``."""
    if to == "earliest":
        return start
    if to == "latest":
        return end
    offset = to[partition] if isinstance(to, Mapping) else to
    assert isinstance(offset, int)
    if not start <= offset <= end:
        raise OffsetOutOfRangeError(
            f"offset {offset} is outside {stream}[{partition}]'s retained range {start}..{end} "
            f"(the end, {end}, is where the next record will go); reset to an offset within "
            "it, or to 'earliest' or 'latest'"
        )
    return offset
