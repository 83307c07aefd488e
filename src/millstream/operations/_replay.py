"""Reading the exceptions stream and re-submitting chosen failures to their service.

A replay writes the failed input — its key, value and original headers, plus
``millstream-replay-of`` (the exception's id), ``millstream-replay-stream`` and
``millstream-replay-partition`` — to ``millstream.retry.<group>``, which only that service's
group reads: other groups reading the original input never see the record twice. An input
stored by reference (too large to inline) is re-read from its stream, which must still
retain it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from millstream._wellknown import (
    EXCEPTIONS,
    REPLAY_HEADER,
    ensure_platform_stream,
    retry_stream,
)
from millstream.codecs import header
from millstream.errors import NotFoundError, OffsetOutOfRangeError
from millstream.records import Headers
from millstream.runtime._failures import ExceptionRecord, parse_exception
from millstream.runtime._handling import REPLAY_PARTITION_HEADER, REPLAY_STREAM_HEADER
from millstream.streams._base import Streams
from millstream.streams._reading import read_ranges, read_to_end

__all__ = ["Replayed", "list_exceptions", "replay", "replayed_ids", "replays"]


def list_exceptions(streams: Streams, *, group: str | None = None,
                    service: str | None = None, since: float | None = None,
                    ids: Iterable[int] | None = None) -> list[ExceptionRecord]:
    """Exception records, oldest first, filtered by group, service, time or ids. ``since``:
    only those written at or after this time, in seconds since the epoch (as ``time.time()``)."""
    since_ms = None if since is None else since * 1000  # records carry milliseconds
    wanted = set(ids) if ids is not None else None
    found = []
    for record in read_to_end(streams, EXCEPTIONS):
        if wanted is not None and record.offset not in wanted:
            continue
        if group is not None and record.key != group.encode():
            continue
        if since_ms is not None and record.timestamp < since_ms:
            continue
        failure = parse_exception(record)
        if failure is None or (service is not None and failure.service != service):
            continue
        found.append(failure)
    return found


def replayed_ids(streams: Streams, group: str) -> set[int]:
    """Ids of the exceptions already re-submitted to ``group``."""
    return set(replays(streams, group))


def replays(streams: Streams, group: str, *, last: int | None = None) -> dict[int, int]:
    """The exceptions already re-submitted to ``group``: each id, and the offset in its
    retry stream where it went (the latest, if it was replayed more than once). ``last``:
    read only that many of the newest records of each partition (a bounded read)."""
    stream = retry_stream(group)
    if stream not in streams.admin().list_streams():
        return {}
    done: dict[int, int] = {}
    info = streams.admin().describe_stream(stream)
    ranges = {p.partition: (p.start if last is None else max(p.start, p.end - last), p.end)
              for p in info.partitions}
    for record in read_ranges(streams, stream, ranges):
        for name, value in record.headers:
            if name == REPLAY_HEADER and value is not None:
                done[int(value)] = record.offset
    return done


@dataclass(frozen=True, slots=True)
class Replayed:
    """One re-submitted failure: its id, the retry stream and where the record went."""

    id: int
    group: str
    stream: str
    offset: int


def _original_value(streams: Streams, failure: ExceptionRecord) -> bytes | None:
    if not failure.by_reference:
        return failure.value()
    stream, partition, offset = (failure.input["stream"], int(failure.input["partition"]),
                                 int(failure.input["offset"]))
    info = streams.admin().describe_stream(stream)
    part = info.partitions[partition]
    if not part.start <= offset < part.end:
        raise OffsetOutOfRangeError(
            f"exception {failure.id} refers to {stream}[{partition}]@{offset}, which the "
            f"stream no longer retains (kept: {part.start}..{part.end - 1}); it cannot be "
            "replayed"
        )
    for record in read_to_end(streams, stream, start=offset, stop=offset + 1):
        if record.partition == partition and record.offset == offset:
            return record.value
    raise NotFoundError(f"could not re-read {stream}[{partition}]@{offset} for exception "
                        f"{failure.id}")


def replay(streams: Streams, failures: Iterable[ExceptionRecord]) -> list[Replayed]:
    """Re-submit each failure to its service's retry stream; return where each went."""
    chosen = list(failures)
    admin = streams.admin()
    done: list[Replayed] = []
    with streams.open_producer() as producer:
        for failure in chosen:
            if not failure.group:
                raise NotFoundError(f"exception {failure.id} names no consumer group")
            target = retry_stream(failure.group)
            ensure_platform_stream(admin, target)
            given = failure.headers()
            # a failure of a replayed record keeps pointing at the original input
            origin_stream = header(given, REPLAY_STREAM_HEADER) or str(failure.input["stream"])
            origin_partition = (header(given, REPLAY_PARTITION_HEADER)
                                or str(failure.input["partition"]))
            original: Headers = tuple(
                (n, v) for n, v in given
                if n not in (REPLAY_HEADER, REPLAY_STREAM_HEADER, REPLAY_PARTITION_HEADER))
            headers = (*original,
                       (REPLAY_HEADER, str(failure.id).encode()),
                       (REPLAY_STREAM_HEADER, origin_stream.encode()),
                       (REPLAY_PARTITION_HEADER, origin_partition.encode()))
            value = None if failure.document.get("value_null") else _original_value(
                streams, failure)
            # the original timestamp: a service that reads event time from it (a window, a
            # join) must see the record's time, not the replay's
            stamp = failure.input.get("timestamp")
            position = producer.send(target, value, key=failure.key(), headers=headers,
                                     partition=0,
                                     timestamp=stamp if isinstance(stamp, int) else None).wait()
            done.append(Replayed(failure.id, failure.group, target, position.offset))
    return done
