"""A running service's metrics: counters, the processing-time histogram and lag.

The runner calls ``Metrics`` in its loop (plain attribute increments, no locks: one thread);
``snapshot()`` turns the totals plus the interval since the last snapshot into the JSON
document written to ``millstream.metrics`` and returned by ``statistics()``.

A metrics record (``kind: "service"``)::

    {"kind": "service", "app": ..., "service": ..., "group": ..., "instance": "host:pid",
     "run": "<12 hex digits, new for every run>", "version": ...,
     "time_ms": ..., "started_ms": ..., "interval_ms": ...,
     "totals":   {"in": n, "out": n, "errors": n, "retries": n, "exceptions": n},
     "interval": {... same counters since the previous record ...},
     "processing": {"count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"},   # interval
     "histogram": {"buckets": {...}, "count", "total_us", "max_us"},               # interval
     "processing_total": {"count", "total_us"},                             # since start
     "lag": {"stream/partition": records}, "assigned": ["stream/partition", ...],
     "final": false}

``final`` is true on the record a run writes when it stops cleanly (after its last commit);
a run that dies writes none. ``instance`` names the process (and slot) for people and
Prometheus; ``run`` tells apart two runs that share one (a runner started again in the same
process, a container restarted with the same host name and pid), so neither's totals hide
the other's.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from millstream.records import StreamPartition
from millstream.runtime._clock import SYSTEM_CLOCK, Clock
from millstream.runtime._histogram import Histogram

__all__ = ["COUNTERS", "Metrics", "Statistics", "instance_id"]

COUNTERS = ("in", "out", "errors", "retries", "exceptions")


def instance_id(index: int = 0) -> str:
    """``host:pid``, plus ``#index`` for a second or later instance in one process."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if index == 0 else f"{base}#{index}"


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
    document: dict[str, Any] = field(repr=False)
    #: records the service sent that were never delivered: its producer failed to close
    undelivered: int = 0


class Metrics:
    """Counters and histograms of one service instance."""

    def __init__(self, app: str, service: str, group: str, version: str, *,
                 clock: Clock = SYSTEM_CLOCK, instance: int = 0) -> None:
        self._clock = clock
        # the runner's thread records; statistics() may read from another thread
        self._lock = threading.Lock()
        self.identity = {"app": app, "service": service, "group": group,
                         "instance": instance_id(instance), "version": version}
        #: this run's id in its metrics records (exception records name the instance only)
        self.run = uuid.uuid4().hex[:12]
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
        self._last_totals = dict.fromkeys(COUNTERS, 0)
        self.lag: dict[StreamPartition, int] = {}
        self.assigned: list[StreamPartition] = []

    def record_batch(self, durations_ns: list[int], weight: int, records: int) -> None:
        """Count a batch of ``records`` processed records and the processing times sampled
        from it, each standing for ``weight`` records."""
        with self._lock:
            if weight == 1 or len(durations_ns) <= 1:
                self.histogram.record_many_ns(durations_ns, max(records, 1)
                                              if len(durations_ns) == 1 else weight)
            else:  # the last sample stands for the records after it, so counts stay exact
                self.histogram.record_many_ns(durations_ns[:-1], weight)
                self.histogram.record_many_ns(durations_ns[-1:],
                                              records - weight * (len(durations_ns) - 1))
            self.records_in += records

    def totals(self) -> dict[str, int]:
        return {"in": self.records_in, "out": self.records_out, "errors": self.errors,
                "retries": self.retries, "exceptions": self.exceptions}

    def snapshot(self, *, final: bool = False, advance: bool = True) -> dict[str, Any]:
        """The metrics document for the interval since the previous snapshot; with
        ``advance`` the interval restarts."""
        with self._lock:
            return self._snapshot(final, advance)

    def _snapshot(self, final: bool, advance: bool) -> dict[str, Any]:
        now = int(self._clock.time() * 1000)
        totals = self.totals()
        interval = {k: totals[k] - self._last_totals[k] for k in COUNTERS}
        doc: dict[str, Any] = {
            "kind": "service", **self.identity, "run": self.run, "time_ms": now,
            "started_ms": self.started_ms,
            "interval_ms": max(now - self._last_ms, 1), "totals": totals, "interval": interval,
            "processing": self.histogram.summary(), "histogram": self.histogram.to_dict(),
            "processing_total": {
                "count": self.total_histogram.count + self.histogram.count,
                "total_us": self.total_histogram.total + self.histogram.total},
            "lag": {f"{sp.stream}/{sp.partition}": n for sp, n in sorted(self.lag.items())},
            "assigned": [f"{sp.stream}/{sp.partition}" for sp in self.assigned],
            "final": final,
        }
        if advance:
            self.total_histogram.merge(self.histogram)
            self.histogram = Histogram()
            self._last_ms = now
            self._last_totals = totals
        return doc

    def statistics(self) -> Statistics:
        with self._lock:
            whole = Histogram()
            whole.merge(self.total_histogram)
            whole.merge(self.histogram)
            doc = self._snapshot(False, False)
        return Statistics(
            records_in=self.records_in, records_out=self.records_out, errors=self.errors,
            retries=self.retries, exceptions=self.exceptions, processing=whole.summary(),
            lag=doc["lag"], assigned=tuple(doc["assigned"]),
            uptime_s=(self._clock.time() * 1000 - self.started_ms) / 1000.0, document=doc,
            undelivered=self.undelivered,
        )
