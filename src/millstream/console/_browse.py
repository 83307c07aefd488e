"""Reading a stream for people, bounded: its partitions, a page of records, the offset for a
time, a search by key and a live tail — what the console's Streams page shows.

Every call reads at most a bounded number of records (``MAX_RECORDS`` returned, ``MAX_SCAN``
read by a search) and says when it stopped early; bad input (a partition or offset the stream
does not have) raises ``InvalidRequestError`` naming the value and what to give instead.
All of it goes through the streams Protocols, so it works on every backend; what a backend
does not know (Kafka does not say a partition's bytes) is ``None``, shown as "unknown".
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from millstream.console._limits import MAX_RECORDS, MAX_SCAN
from millstream.errors import InvalidRequestError
from millstream.records import Record, StreamPartition
from millstream.streams._base import Streams
from millstream.streams._info import PartitionInfo, StreamInfo
from millstream.streams._reading import read_ranges

__all__ = ["Page", "Search", "Tail", "describe_all", "offset_for_time", "read_page",
           "search_key", "stream_bytes", "tail"]

#: how long one request may wait for the records it asked for
_READ_TIMEOUT_S = 10.0


def describe_all(streams: Streams) -> list[StreamInfo]:
    """Every stream, sorted by name, with its partitions' retained ranges and retention."""
    admin = streams.admin()
    return [admin.describe_stream(name) for name in admin.list_streams()]


def stream_bytes(info: StreamInfo) -> int | None:
    """The bytes a stream holds over its partitions; None when the backend does not say."""
    sizes = [p.bytes for p in info.partitions]
    if any(size is None for size in sizes):
        return None
    return sum(size for size in sizes if size is not None)


def _partition(info: StreamInfo, partition: int) -> PartitionInfo:
    if not 0 <= partition < info.partition_count:
        raise InvalidRequestError(
            f"partition {partition} does not exist: {info.name} has partitions 0 to "
            f"{info.partition_count - 1}")
    return info.partitions[partition]


def _read(streams: Streams, stream: str, ranges: Mapping[int, tuple[int, int]]
          ) -> Iterator[Record]:
    return read_ranges(streams, stream, ranges, timeout_s=_READ_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class Page:
    """Records of one partition from ``offset``: at most ``limit`` offsets' worth.

    ``next`` is where the following page starts (``end`` once the page reaches it);
    ``start`` and ``end`` the partition's retained range when it was read."""

    stream: str
    partition: int
    offset: int
    records: tuple[Record, ...]
    next: int
    start: int
    end: int


def read_page(streams: Streams, stream: str, partition: int, offset: int, *,
              limit: int = 50) -> Page:
    """The records of ``stream[partition]`` at offsets ``offset`` to ``offset + limit - 1``
    (fewer at the end, or where compaction left gaps); ``limit`` is at most ``MAX_RECORDS``.
    An offset outside the retained range (start..end) is refused, naming the range."""
    limit = max(1, min(limit, MAX_RECORDS))
    info = streams.admin().describe_stream(stream)
    part = _partition(info, partition)
    if not part.start <= offset <= part.end:
        raise InvalidRequestError(
            f"offset {offset} is outside {stream}[{partition}]: it keeps offsets {part.start} "
            f"to {part.end - 1} (the next record goes to {part.end}); give an offset from "
            f"{part.start} to {part.end}" if part.end > part.start else
            f"offset {offset} is outside {stream}[{partition}], which holds no records (the "
            f"next goes to {part.end}); give {part.end}")
    stop = min(part.end, offset + limit)
    records = tuple(_read(streams, stream, {partition: (offset, stop)}))
    return Page(stream, partition, offset, records, stop, part.start, part.end)


def offset_for_time(streams: Streams, stream: str, partition: int, timestamp_ms: int) -> int:
    """The offset of the first record of ``stream[partition]`` stamped at or after
    ``timestamp_ms`` (milliseconds since the epoch); the partition's end if there is none."""
    if timestamp_ms < 0:
        raise InvalidRequestError(f"time {timestamp_ms} ms is before 1970; give a later time")
    info = streams.admin().describe_stream(stream)
    _partition(info, partition)
    sp = StreamPartition(stream, partition)
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        reader.seek_to_timestamp(timestamp_ms, [sp])
        return reader.position(sp)


@dataclass(frozen=True, slots=True)
class Search:
    """What a search by key found: ``records`` (oldest first within each partition),
    ``scanned`` (records read), and — when it stopped before the end of the stream —
    ``resume``, the (partition, offset) a continued search starts from, and ``why``."""

    key: bytes
    records: tuple[Record, ...]
    scanned: int
    resume: tuple[int, int] | None
    why: str

    @property
    def complete(self) -> bool:
        """True when every retained record from where the search began was read."""
        return self.resume is None


def search_key(streams: Streams, stream: str, key: bytes, *,
               start: tuple[int, int] | None = None, max_scan: int = MAX_SCAN,
               max_results: int = MAX_RECORDS) -> Search:
    """The records of ``stream`` whose key is exactly ``key``, reading partition after
    partition from ``start`` (``(partition, offset)``; default the first retained record of
    partition 0). Reads at most ``max_scan`` records and returns at most ``max_results``;
    when it stops early, ``resume`` says where to go on."""
    info = streams.admin().describe_stream(stream)
    first_partition, first_offset = start if start is not None else (0, 0)
    _partition(info, first_partition)
    found: list[Record] = []
    scanned = 0
    for part in info.partitions[first_partition:]:
        begin = max(part.start, first_offset if part.partition == first_partition else 0)
        if begin >= part.end:
            continue
        budget = max_scan - scanned
        if budget <= 0:
            return Search(key, tuple(found), scanned, (part.partition, begin),
                          f"stopped after reading {scanned:,} records (at most {max_scan:,} "
                          "a search)")
        stop = min(part.end, begin + budget)
        for record in _read(streams, stream, {part.partition: (begin, stop)}):
            scanned += 1
            if record.key == key:
                found.append(record)
                if len(found) >= max_results:
                    after = record.offset + 1
                    more = after < part.end or part.partition + 1 < info.partition_count
                    return Search(key, tuple(found), scanned,
                                  (part.partition, after) if more else None,
                                  f"stopped at {max_results} matches (at most "
                                  f"{max_results} a search)" if more else "")
        if stop < part.end:
            return Search(key, tuple(found), scanned, (part.partition, stop),
                          f"stopped after reading {scanned:,} records (at most {max_scan:,} "
                          "a search)")
    return Search(key, tuple(found), scanned, None, "")


@dataclass(frozen=True, slots=True)
class Tail:
    """New records of a stream after some positions: ``records`` in time order, ``after``
    the positions to ask from next (each partition's end when read), ``skipped`` the new
    records left out because more came than one answer returns (the oldest are skipped;
    always 0 for a tail's first answer, whose older records are there to browse)."""

    records: tuple[Record, ...]
    after: dict[int, int]
    skipped: int


def tail(streams: Streams, stream: str, after: Mapping[int, int] | None = None, *,
         limit: int = MAX_RECORDS) -> Tail:
    """The records of ``stream`` past ``after`` (partition -> next offset; a partition not
    named starts at its end), at most ``limit`` (the newest of them). With ``after`` None,
    the newest ``limit`` records of the stream, so a tail opens on what came last."""
    limit = max(1, min(limit, MAX_RECORDS))
    info = streams.admin().describe_stream(stream)
    ranges: dict[int, tuple[int, int]] = {}
    waiting = 0
    for part in info.partitions:
        if after is None:
            first = max(part.start, part.end - limit)
        else:
            first = min(max(after.get(part.partition, part.end), part.start), part.end)
        waiting += part.end - first
        ranges[part.partition] = (max(first, part.end - limit), part.end)
    newest = heapq.nlargest(limit, _read(streams, stream, ranges),
                            key=lambda r: (r.timestamp, r.partition, r.offset))
    newest.reverse()
    skipped = 0 if after is None else max(waiting - len(newest), 0)
    return Tail(tuple(newest), {p.partition: p.end for p in info.partitions}, skipped)
