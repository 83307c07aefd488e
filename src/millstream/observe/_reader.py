"""Reading ``millstream.metrics``: each instance's latest records, kept for the health model.

``MetricsTable`` takes records in stream order and keeps the last two of every instance (one
run of a service process), plus its processing count and sum; ``snapshot(now_ms)`` hands them
to the health model (``_health``). ``MetricsView`` feeds a table from a standalone consumer of
the stream, starting a while back (``since_ms``) and then tailing; its clock is injectable.
What is not a metrics record this millstream reads is counted in ``skipped`` and left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from millstream._wellknown import METRICS
from millstream.codecs import DecodeError
from millstream.observe._health import (
    SILENT_FLOOR_MS,
    InstanceView,
    Snapshot,
    instance_view,
    service_view,
)
from millstream.records import StreamPartition
from millstream.runtime._metrics_record import MetricsRecord
from millstream.streams._base import Streams

__all__ = ["DEFAULT_SINCE_MS", "MetricsTable", "MetricsView", "wall_clock_ms"]

log = logging.getLogger(__name__)

#: How far back a view starts reading by default: ten minutes.
DEFAULT_SINCE_MS = 10 * 60 * 1000


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Track:
    latest: MetricsRecord
    previous: MetricsRecord | None = None
    processed_count: int = 0
    processed_us: int = 0


class MetricsTable:
    """The last two metrics records of every instance, fed in stream order."""

    def __init__(self, *, silent_floor_ms: int = SILENT_FLOOR_MS) -> None:
        self.silent_floor_ms = silent_floor_ms
        self._tracks: dict[tuple[str, str, str], _Track] = {}  # (group, instance, run)
        #: records that were not metrics records this millstream reads
        self.skipped = 0

    def add(self, record: MetricsRecord) -> bool:
        """Take one record; False (and ignored) if it is older than its instance's latest."""
        key = (record.group, record.instance, record.run)
        count, total = record.histogram.count, record.histogram.total_us
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(record, None, count, total)
        elif record.time_ms < track.latest.time_ms:
            return False
        else:
            track.previous, track.latest = track.latest, record
            track.processed_count += count
            track.processed_us += total
        if record.processing_total is not None:  # the instance's own since-start totals
            track.processed_count = record.processing_total.count
            track.processed_us = record.processing_total.total_us
        return True

    def add_bytes(self, value: bytes | None) -> bool:
        """Take one record value (JSON); False if it is not a metrics record."""
        try:
            if value is None:
                raise DecodeError("a record without a value (a tombstone)")
            record = MetricsRecord.parse(value)
        except DecodeError as exc:
            log.debug("skipped on %s: %s", METRICS, exc)
            self.skipped += 1
            return False
        return self.add(record)

    def snapshot(self, now_ms: int) -> Snapshot:
        by_group: dict[str, list[InstanceView]] = {}
        for (group, _, _), track in sorted(self._tracks.items()):
            by_group.setdefault(group, []).append(instance_view(
                track.latest, track.previous, now_ms, silent_floor_ms=self.silent_floor_ms,
                processed=(track.processed_count, track.processed_us)))
        return Snapshot(now_ms, tuple(service_view(v) for _, v in sorted(by_group.items())))


class MetricsView:
    """A ``MetricsTable`` fed by a standalone consumer of the metrics stream.

    Reading starts ``since_ms`` before now (``None``: the first retained record) or at
    ``from_offset``; ``refresh`` reads what has arrived since. Raises ``UnknownStreamError``
    when the stream does not exist (no service has run yet). Use with ``with`` or ``close()``.
    """

    def __init__(self, streams: Streams, *, since_ms: int | None = DEFAULT_SINCE_MS,
                 from_offset: int | None = None, now_ms: Callable[[], int] = wall_clock_ms,
                 silent_floor_ms: int = SILENT_FLOOR_MS, stream: str = METRICS) -> None:
        self.now_ms = now_ms
        self.stream = stream
        self.table = MetricsTable(silent_floor_ms=silent_floor_ms)
        self._consumer = streams.open_consumer(None)

        def start(partitions: list[StreamPartition]) -> None:
            if from_offset is not None:
                for sp in partitions:
                    self._consumer.seek(sp, from_offset)
            elif since_ms is None:
                self._consumer.seek_to_beginning(partitions)
            else:
                self._consumer.seek_to_timestamp(max(now_ms() - since_ms, 0), partitions)

        try:
            self._consumer.subscribe([stream], on_assign=start)
        except BaseException:
            self._consumer.close()
            raise

    def refresh(self, timeout: float = 0.0, *, max_polls: int = 1000) -> int:
        """Read the records that arrived, waiting up to ``timeout`` s for the first; stop when
        a poll comes back empty and nothing is left to read. Returns how many were read."""
        read = 0
        wait = timeout
        for _ in range(max_polls):
            records = self._consumer.poll(max_records=500, timeout=wait)
            for record in records:
                self.table.add_bytes(record.value)
            read += len(records)
            wait = 0.0
            if not records and sum(self._consumer.lag().values()) == 0:
                break
        return read

    def snapshot(self) -> Snapshot:
        """Every service as of now (by the view's clock)."""
        return self.table.snapshot(self.now_ms())

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> MetricsView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
