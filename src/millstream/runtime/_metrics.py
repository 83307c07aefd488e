"""A running service's metrics: counters, the processing-time histogram and lag.

The runner calls ``Metrics`` in its loop (plain attribute increments; a lock only where
``statistics()`` may read from another thread); ``record()`` turns the totals plus the
interval since the previous record into a ``MetricsRecord`` (``_metrics_record`` defines it
and its JSON), which the runner writes to ``millstream.metrics``; ``snapshot()`` is the same
as the JSON object. ``final`` is true on the record a run writes when it stops cleanly
(after its last commit); a run that dies writes none.

``instance`` names the process (and slot) for people and Prometheus; ``run`` tells apart two
runs that share one (a runner started again in the same process, a container restarted with
the same host name and pid), so neither's totals hide the other's.

Each record also names what the service declares (``inputs``, ``outputs``, ``stores``) and
counts records per stream: the loop passes a batch's count per input stream to
``record_batch`` (``counts_in`` makes it: one dict entry for a batch of one stream), the
delivery modes call ``count_out`` once per stream written per send, and ``ctx.emit_now``
once per record it sends.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from millstream.records import StreamPartition
from millstream.runtime._clock import SYSTEM_CLOCK, Clock
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics_record import (
    Counters,
    MetricsRecord,
    ProcessingSummary,
    ProcessingTotal,
    RecordedHistogram,
)
from millstream.streams._base import RecordBatch

__all__ = ["Metrics", "Statistics", "counts_in", "instance_id"]


def instance_id(index: int = 0) -> str:
    """``host:pid``, plus ``#index`` for a second or later instance in one process."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if index == 0 else f"{base}#{index}"


def counts_in(batch: RecordBatch, handled: int) -> dict[str, int]:
    """How many of the first ``handled`` records of ``batch`` come from each stream — without
    a pass over the records when the batch holds one stream's records (the common case)."""
    names = {sp.stream for sp in batch.ends()}
    if len(names) == 1:
        return {names.pop(): handled}
    return dict(Counter(batch.streams()[:handled]))


@dataclass(frozen=True, slots=True)
class Statistics:
    """What ``statistics()`` returns: totals since start and the latest interval."""

    records_in: int
    records_out: int
    errors: int
    retries: int
    exceptions: int
    processing: dict[str, float]
    lag: dict[str, int]
    assigned: tuple[str, ...]
    uptime_s: float
    #: the metrics record as JSON (``MetricsRecord.to_dict``)
    document: dict[str, Any] = field(repr=False)
    #: records the service sent that were never delivered: its producer failed to close
    undelivered: int = 0


class Metrics:
    """Counters and histograms of one service instance."""

    def __init__(self, app: str, service: str, group: str, version: str, *,
                 clock: Clock = SYSTEM_CLOCK, instance: int = 0, inputs: Iterable[str] = (),
                 outputs: Iterable[str] = (), stores: Iterable[str] = ()) -> None:
        self._clock = clock
        # the runner's thread records; statistics() may read from another thread
        self._lock = threading.Lock()
        #: who writes: the fields exception records carry too
        self.identity = {"app": app, "service": service, "group": group,
                         "instance": instance_id(instance), "version": version}
        #: this run's id in its metrics records (exception records name the instance only)
        self.run = uuid.uuid4().hex[:12]
        #: what the service declares, named in every record
        self.inputs, self.outputs, self.stores = tuple(inputs), tuple(outputs), tuple(stores)
        self.records_in = 0
        self.records_out = 0
        self.errors = 0
        self.retries = 0
        self.exceptions = 0
        self.undelivered = 0  # counted when a producer fails to close (never in a record)
        self.histogram = Histogram()  # the current interval
        self.total_histogram = Histogram()  # since start
        self.started_ms = int(clock.time() * 1000)
        self._last_ms = self.started_ms
        self._last_totals = Counters()
        self.lag: dict[StreamPartition, int] = {}
        self.assigned: list[StreamPartition] = []
        #: records read from / written to each stream since start
        self.streams_in: dict[str, int] = {}
        self.streams_out: dict[str, int] = {}
        self._last_in: dict[str, int] = {}
        self._last_out: dict[str, int] = {}

    def record_batch(self, durations_ns: list[int], weight: int, records: int,
                     streams: Mapping[str, int] | None = None) -> None:
        """Count a batch of ``records`` processed records and the processing times sampled
        from it, each standing for ``weight`` records; ``streams``: how many of the records
        came from each stream (``counts_in``)."""
        with self._lock:
            if streams:
                self._add_in(streams)
            if weight == 1 or len(durations_ns) <= 1:
                self.histogram.record_many_ns(durations_ns, max(records, 1)
                                              if len(durations_ns) == 1 else weight)
            else:  # the last sample stands for the records after it, so counts stay exact
                self.histogram.record_many_ns(durations_ns[:-1], weight)
                self.histogram.record_many_ns(durations_ns[-1:],
                                              records - weight * (len(durations_ns) - 1))
            self.records_in += records

    def count_in(self, streams: Mapping[str, int]) -> None:
        """Count records processed without timing them: how many came from each stream."""
        with self._lock:
            self.records_in += sum(streams.values())
            self._add_in(streams)

    def _add_in(self, streams: Mapping[str, int]) -> None:
        counts = self.streams_in
        for name, n in streams.items():
            counts[name] = counts.get(name, 0) + n

    def count_out(self, stream: str, records: int) -> None:
        """Count ``records`` records written to ``stream`` (one call per stream and send, or
        per ``ctx.emit_now``, which an async handler's thread makes)."""
        with self._lock:
            self.records_out += records
            counts = self.streams_out
            counts[stream] = counts.get(stream, 0) + records

    def totals(self) -> Counters:
        return Counters(records_in=self.records_in, records_out=self.records_out,
                        errors=self.errors, retries=self.retries, exceptions=self.exceptions)

    def record(self, *, final: bool = False, advance: bool = True) -> MetricsRecord:
        """The metrics record for the interval since the previous one; with ``advance`` the
        interval restarts."""
        with self._lock:
            return self._record(final, advance)

    def snapshot(self, *, final: bool = False, advance: bool = True) -> dict[str, Any]:
        """``record()`` as the JSON object written to the stream."""
        return self.record(final=final, advance=advance).to_dict()

    def _record(self, final: bool, advance: bool) -> MetricsRecord:
        now = int(self._clock.time() * 1000)
        totals = self.totals()
        # copies: the next interval counts from them
        streams_in, streams_out = dict(self.streams_in), dict(self.streams_out)
        who = self.identity
        record = MetricsRecord(
            app=who["app"], service=who["service"], group=who["group"],
            instance=who["instance"], version=who["version"], run=self.run, time_ms=now,
            started_ms=self.started_ms,
            interval_ms=max(now - self._last_ms, 1), totals=totals,
            interval=totals - self._last_totals,
            processing=ProcessingSummary.model_validate(self.histogram.summary()),
            histogram=RecordedHistogram.of(self.histogram),
            processing_total=ProcessingTotal(
                count=self.total_histogram.count + self.histogram.count,
                total_us=self.total_histogram.total + self.histogram.total),
            lag={f"{sp.stream}/{sp.partition}": n for sp, n in sorted(self.lag.items())},
            assigned=tuple(f"{sp.stream}/{sp.partition}" for sp in self.assigned),
            inputs=self.inputs, outputs=self.outputs, stores=self.stores,
            streams_in=_since(streams_in, self._last_in),
            streams_out=_since(streams_out, self._last_out),
            final=final,
        )
        if advance:
            self._last_in, self._last_out = streams_in, streams_out
            self.total_histogram.merge(self.histogram)
            self.histogram = Histogram()
            self._last_ms = now
            self._last_totals = totals
        return record

    def statistics(self) -> Statistics:
        with self._lock:
            whole = Histogram()
            whole.merge(self.total_histogram)
            whole.merge(self.histogram)
            record = self._record(False, False)
        return Statistics(
            records_in=self.records_in, records_out=self.records_out, errors=self.errors,
            retries=self.retries, exceptions=self.exceptions, processing=whole.summary(),
            lag=dict(record.lag), assigned=record.assigned,
            uptime_s=(self._clock.time() * 1000 - self.started_ms) / 1000.0,
            document=record.to_dict(),
            undelivered=self.undelivered,
        )


def _since(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Per stream, the count in ``now`` less the one in ``before`` (streams sorted)."""
    return {name: n - before.get(name, 0) for name, n in sorted(now.items())}
