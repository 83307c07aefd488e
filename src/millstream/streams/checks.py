"""Argument checks every backend applies the same way, so both give the same errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from millstream.errors import InvalidRequestError, RecordTooLargeError
from millstream.records import Headers, StreamPartition

__all__ = [
    "check_batch",
    "check_commit_offset",
    "check_offset",
    "check_poll",
    "check_timestamp",
    "stream_names",
]


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
