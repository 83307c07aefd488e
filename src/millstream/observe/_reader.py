"""Reading ``millstream.metrics``: each instance's latest records, kept for the health model.

``MetricsTable`` takes records in stream order and keeps the last two of every instance (one
run of a service process), plus its processing count and sum; ``snapshot(now)`` hands them
to the health model (``_health``). ``MetricsView`` feeds a table from a standalone consumer of
the stream, starting a while back (``since`` seconds) and then tailing; its clock (``now``,
seconds since the epoch as ``time.time``) is injectable. Times given here are seconds; the
records and the views made from them keep the metrics record's milliseconds (``time_ms``).
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

__all__ = ["DEFAULT_SINCE", "SILENT_FLOOR", "MetricsTable", "MetricsView"]

log = logging.getLogger(__name__)

#: How far back a view starts reading by default, in seconds: ten minutes.
DEFAULT_SINCE = 10 * 60.0
#: An instance is silent at the earliest this many seconds after its latest record.
SILENT_FLOOR = SILENT_FLOOR_MS / 1000


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(slots=True)
class _Track:
    latest: MetricsRecord
    previous: MetricsRecord | None = None
    processed_count: int = 0
    processed_us: int = 0


class MetricsTable:
    """The last two metrics records of every instance, fed in stream order. An instance
    counts as silent ``max(3 × its interval, silent_floor)`` seconds after its latest record."""

    def __init__(self, *, silent_floor: float = SILENT_FLOOR) -> None:
        self.silent_floor = silent_floor
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

    def forget(self, before_ms: int) -> int:
        """Drop the instances whose latest record is older than ``before_ms``; how many."""
        old = [key for key, track in self._tracks.items() if track.latest.time_ms < before_ms]
        for key in old:
            del self._tracks[key]
        return len(old)

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

    def snapshot(self, now: float) -> Snapshot:
        """Every service as of ``now`` (seconds since the epoch)."""
        now_ms = _ms(now)
        by_group: dict[str, list[InstanceView]] = {}
        for (group, _, _), track in sorted(self._tracks.items()):
            by_group.setdefault(group, []).append(instance_view(
                track.latest, track.previous, now_ms, silent_floor_ms=_ms(self.silent_floor),
                processed=(track.processed_count, track.processed_us)))
        return Snapshot(now_ms, tuple(service_view(v) for _, v in sorted(by_group.items())))


class MetricsView:
    """A ``MetricsTable`` fed by a standalone consumer of the metrics stream.

    Reading starts ``since`` seconds before now (``None``: the first retained record) or at
    ``from_offset``; ``refresh`` reads what has arrived since. ``now`` is the view's clock
    (seconds since the epoch; ``time.time`` by default). Raises ``UnknownStreamError`` when
    the stream does not exist (no service has run yet). Use with ``with`` or ``close()``.
    """

    def __init__(self, streams: Streams, *, since: float | None = DEFAULT_SINCE,
                 from_offset: int | None = None, now: Callable[[], float] = time.time,
                 silent_floor: float = SILENT_FLOOR, stream: str = METRICS) -> None:
        self.now = now
        self.stream = stream
        self.table = MetricsTable(silent_floor=silent_floor)
        self._consumer = streams.open_consumer(None)

        def start(partitions: list[StreamPartition]) -> None:
            if from_offset is not None:
                for sp in partitions:
                    self._consumer.seek(sp, from_offset)
            elif since is None:
                self._consumer.seek_to_beginning(partitions)
            else:  # record timestamps are milliseconds
                self._consumer.seek_to_timestamp(max(_ms(now() - since), 0), partitions)

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
            if not records:
                if sum(self._consumer.lag().values()) == 0:
                    break
                wait = 0.1  # records to read, not fetched yet: wait for them, do not spin
        return read

    def snapshot(self) -> Snapshot:
        """Every service as of now (by the view's clock)."""
        return self.table.snapshot(self.now())

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> MetricsView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
