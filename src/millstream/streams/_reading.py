"""Reading a stream from some offset to its current end, partition by partition.

For tools that look at everything a stream retains (replay, diff, files gc): a standalone
consumer seeks each partition to ``start`` and reads until its position reaches the end
(or ``stop``) that the admin reported when the partition's turn came. On Kafka the position
also moves past transaction markers, so transactional streams end too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from millstream.errors import OperationTimeoutError
from millstream.records import Record, StreamPartition
from millstream.streams._base import Streams

__all__ = ["read_ranges", "read_to_end"]


def read_to_end(streams: Streams, stream: str, *, start: int = 0, stop: int | None = None,
                timeout_s: float = 300.0) -> Iterator[Record]:
    """Every retained record of ``stream`` with ``start <= offset < stop`` (default: to the
    end), partition after partition, in offset order within each."""
    info = streams.admin().describe_stream(stream)
    ranges = {part.partition: (max(start, part.start),
                               part.end if stop is None else min(stop, part.end))
              for part in info.partitions}
    return read_ranges(streams, stream, ranges, timeout_s=timeout_s)


def read_ranges(streams: Streams, stream: str, ranges: Mapping[int, tuple[int, int]], *,
                timeout_s: float = 300.0) -> Iterator[Record]:
    """The records of ``stream`` in ``ranges`` (partition -> ``(first, end)``, end
    exclusive), partition after partition, in offset order within each."""
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        for partition, (first, end) in sorted(ranges.items()):
            if first >= end:
                continue
            sp = StreamPartition(stream, partition)
            reader.seek(sp, first)
            others = [p for p in reader.assignment() if p != sp]
            if others:
                reader.seek_to_end(others)
            deadline = time.monotonic() + timeout_s
            while reader.position(sp) < end:
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"reading {sp} up to offset {end} took over {timeout_s} s")
                for record in reader.poll(max_records=10_000, timeout=0.5):
                    if record.partition == partition and record.offset < end:
                        yield record
