"""The console's memory of ``millstream.metrics``: every record of the last ``keep`` seconds.

``MetricsHistory`` replays the metrics stream from now − ``keep`` when it starts (the offsets
for that time) and then tails it on a thread of its own, so a page drawn just after the
console started already has the last hour's points. Records older than ``keep`` are dropped
as new ones arrive. The health of each instance comes from ``observe.MetricsTable``, fed the
same records. Before any service has run the stream does not exist: the thread waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from millstream._wellknown import METRICS
from millstream.codecs import DecodeError
from millstream.errors import UnknownStreamError
from millstream.observe import MetricsTable, Snapshot
from millstream.records import StreamPartition
from millstream.runtime._metrics_record import MetricsRecord
from millstream.streams._base import Consumer, Streams

__all__ = ["DEFAULT_KEEP", "MetricsHistory"]

log = logging.getLogger(__name__)

#: How much of the metrics stream the console keeps, in seconds: an hour.
DEFAULT_KEEP = 3600.0
#: A record stamped more than this many seconds ahead of the console's clock is left out: it
#: would never leave the window and would stretch every chart to its time.
FUTURE = 300.0
#: every so many records added, instances whose latest record left the window are forgotten
_FORGET_EVERY = 500


class MetricsHistory:
    """The metrics records of the last ``keep`` seconds, by group, in time order.

    ``start()`` replays and tails the stream on a daemon thread; ``add`` takes a record
    directly (the thread uses it too). ``clock`` gives seconds since the epoch."""

    def __init__(self, streams: Streams, *, keep: float = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.time, stream: str = METRICS,
                 poll_timeout: float = 0.5) -> None:
        if keep <= 0:
            raise ValueError(f"keep={keep!r}: the history must keep some seconds (more than 0)")
        self.streams = streams
        self.keep = keep
        self.clock = clock
        self.stream = stream
        self.poll_timeout = poll_timeout
        self._lock = threading.Lock()
        self._by_group: dict[str, deque[MetricsRecord]] = {}
        self._table = MetricsTable()
        self._added = 0
        #: the next offset to read of each partition of the stream, so that a consumer opened
        #: again after an error goes on where the last one stopped (no record twice)
        self._next: dict[StreamPartition, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set once the records of the last ``keep`` seconds have been read (or there are none)
        self.replayed = threading.Event()
        #: records read that were not metrics records this millstream reads
        self.skipped = 0
        #: why reading the stream failed last (None while it works); it is retried
        self.error: str | None = None

    # --- feeding -----------------------------------------------------------------------------

    def add(self, record: MetricsRecord) -> None:
        """Take one record (records of a group come in time order; an older one is dropped
        from the health model but kept in the group's series)."""
        now = self.clock()
        cutoff = round((now - self.keep) * 1000)
        with self._lock:
            if record.time_ms < cutoff or record.time_ms > (now + FUTURE) * 1000:
                return  # too old to keep, or from a clock far ahead (it would never expire)
            self._table.add(record)
            records = self._by_group.setdefault(record.group, deque())
            records.append(record)
            while records and records[0].time_ms < cutoff:
                records.popleft()
            self._added += 1
            if self._added % _FORGET_EVERY == 0:  # runs that left the window: not shown
                self._table.forget(cutoff)
                for group, kept in list(self._by_group.items()):
                    while kept and kept[0].time_ms < cutoff:
                        kept.popleft()
                    if not kept:
                        del self._by_group[group]

    def add_bytes(self, value: bytes | None) -> None:
        if value is None:
            self.skipped += 1
            return
        try:
            self.add(MetricsRecord.parse(value))
        except DecodeError as exc:
            log.debug("console history skipped a record of %s: %s", self.stream, exc)
            self.skipped += 1

    # --- reading -----------------------------------------------------------------------------

    def groups(self) -> list[str]:
        """Every group with a record in the window, sorted."""
        with self._lock:
            return sorted(g for g, records in self._by_group.items() if records)

    def records(self, group: str | None = None) -> list[MetricsRecord]:
        """The records of ``group`` (of every group when None) in the window, oldest first."""
        cutoff = round((self.clock() - self.keep) * 1000)
        with self._lock:
            if group is not None:
                kept = [r for r in self._by_group.get(group, ()) if r.time_ms >= cutoff]
                kept.sort(key=lambda r: r.time_ms)  # instances' records arrive interleaved
                return kept
            every = [r for records in self._by_group.values() for r in records
                     if r.time_ms >= cutoff]
        every.sort(key=lambda r: r.time_ms)
        return every

    def latest(self) -> dict[str, list[MetricsRecord]]:
        """Each group's newest record of every instance run, by group."""
        newest: dict[tuple[str, str, str], MetricsRecord] = {}
        with self._lock:
            for group, records in self._by_group.items():
                for r in records:
                    key = (group, r.instance, r.run)
                    if key not in newest or newest[key].time_ms <= r.time_ms:
                        newest[key] = r
        out: dict[str, list[MetricsRecord]] = {}
        for (group, _, _), r in sorted(newest.items()):
            out.setdefault(group, []).append(r)
        return out

    def snapshot(self, now: float | None = None) -> Snapshot:
        """The health of every service as of ``now`` (the clock's time when None)."""
        with self._lock:
            return self._table.snapshot(self.clock() if now is None else now)

    # --- the tailing thread ------------------------------------------------------------------

    def start(self) -> MetricsHistory:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console-history",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _open(self) -> Consumer | None:
        consumer = self.streams.open_consumer(None)
        since_ms = max(round((self.clock() - self.keep) * 1000), 0)

        def start(partitions: list[StreamPartition]) -> None:
            fresh = [sp for sp in partitions if sp not in self._next]
            for sp in partitions:
                if sp in self._next:
                    consumer.seek(sp, self._next[sp])
            if fresh:
                consumer.seek_to_timestamp(since_ms, fresh)

        try:
            consumer.subscribe([self.stream], on_assign=start)
        except UnknownStreamError:
            consumer.close()
            return None
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _run(self) -> None:
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._open()
                    if consumer is None:  # no service has written metrics yet
                        self.replayed.set()
                        self._stop.wait(1.0)
                        continue
                records = consumer.poll(max_records=500, timeout=self.poll_timeout)
                for record in records:
                    self.add_bytes(record.value)
                    self._next[StreamPartition(record.stream, record.partition)] = \
                        record.offset + 1
                if not records and not self.replayed.is_set() \
                        and sum(consumer.lag().values()) == 0:
                    self.replayed.set()
                self.error = None
            except Exception as exc:  # the console stays up; its pages show the error
                log.warning("the console could not read %s (retrying): %s", self.stream, exc)
                self.error = f"reading {self.stream} failed: {exc}"
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(2.0)
        if consumer is not None:
            consumer.close()
