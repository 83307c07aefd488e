"""The health model: what a service's metrics records say about it at a given time.

Pure functions over ``MetricsRecord``s, with no stream and no clock of their own, so the
arithmetic is tested with hand-built records: ``instance_view`` turns an instance's latest
(and previous) record into an ``InstanceView``, ``service_view`` aggregates the instances of a
group into a ``ServiceView``; a ``Snapshot`` holds every service at one moment.

An instance — one run of a service process, told apart by the record's ``run`` id — is
*stopped* once its latest record is final, *silent* when its latest record is older than
``max(3 × interval_ms, silent_floor_ms)``, *stalled* when it owns partitions, read nothing in
its last two intervals and its lag is above 0 and not falling; otherwise it is *running*. A
service is stalled when one of its running instances is, running when one runs. When none
runs, the instance heard from last decides: *stopped* if it stopped cleanly (a run killed
earlier and restarted does not make a clean stop look silent), *silent* if it went quiet.
Totals add up every instance seen, so restarts and parallel instances all count.

A service's ``health`` is its status, except that a service with an instance up (running or
stalled) whose latest interval counted errors or exceptions is *erroring*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import add
from typing import Literal

from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics_record import Counters, MetricsRecord

__all__ = [
    "SILENT_FACTOR",
    "SILENT_FLOOR_MS",
    "Health",
    "InstanceStatus",
    "InstanceView",
    "ServiceView",
    "Snapshot",
    "instance_view",
    "is_stalled",
    "service_view",
    "silence_threshold_ms",
]

SILENT_FACTOR = 3
#: Below this an instance is never silent, however short its interval (final and first
#: records can report a few milliseconds).
SILENT_FLOOR_MS = 10_000

InstanceStatus = Literal["running", "stalled", "silent", "stopped"]
#: a service's status, or ``erroring``: up, with errors or exceptions in its latest interval
Health = Literal["running", "stalled", "silent", "stopped", "erroring"]


def silence_threshold_ms(latest: MetricsRecord, previous: MetricsRecord | None = None,
                         floor_ms: int = SILENT_FLOOR_MS) -> int:
    """How long after its latest record an instance counts as silent."""
    interval = max(r.interval_ms for r in (latest, previous) if r is not None)
    return max(SILENT_FACTOR * interval, floor_ms)


def is_stalled(latest: MetricsRecord, previous: MetricsRecord | None) -> bool:
    """Assigned partitions (the same in both records), nothing read in either interval, and
    lag above 0 that did not fall."""
    if previous is None or not latest.assigned:
        return False
    if sorted(latest.assigned) != sorted(previous.assigned):
        return False  # a rebalance in between: the two lags are not comparable
    if latest.interval.records_in or previous.interval.records_in:
        return False
    now, before = sum(latest.lag.values()), sum(previous.lag.values())
    return now > 0 and now >= before


@dataclass(frozen=True, slots=True, eq=False)
class InstanceView:
    """One instance as its latest record shows it, at a given time."""

    app: str
    service: str
    group: str
    instance: str
    version: str
    #: tells apart two runs with the same ``instance`` (a restart in one process)
    run: str
    time_ms: int
    interval_ms: int
    status: InstanceStatus
    interval: Counters
    totals: Counters
    lag: dict[str, int]
    assigned: tuple[str, ...]
    #: the latest interval's processing times
    histogram: Histogram
    #: processing count and sum (µs) over every record of this instance the reader has seen
    processed_count: int = 0
    processed_us: int = 0

    @property
    def up(self) -> bool:
        return self.status in ("running", "stalled")

    @property
    def rate_in(self) -> float:
        """Records read per second over the latest interval."""
        return self.interval.records_in * 1000.0 / self.interval_ms

    @property
    def rate_out(self) -> float:
        return self.interval.records_out * 1000.0 / self.interval_ms


def instance_view(latest: MetricsRecord, previous: MetricsRecord | None, now_ms: int, *,
                  silent_floor_ms: int = SILENT_FLOOR_MS,
                  processed: tuple[int, int] = (0, 0)) -> InstanceView:
    """The view of one instance from its latest (and previous) record at time ``now_ms``."""
    status: InstanceStatus
    if latest.final:
        status = "stopped"
    elif now_ms - latest.time_ms > silence_threshold_ms(latest, previous, silent_floor_ms):
        status = "silent"
    elif is_stalled(latest, previous):
        status = "stalled"
    else:
        status = "running"
    return InstanceView(
        app=latest.app, service=latest.service, group=latest.group, instance=latest.instance,
        version=latest.version, run=latest.run, time_ms=latest.time_ms,
        interval_ms=max(latest.interval_ms, 1), status=status, interval=latest.interval,
        totals=latest.totals, lag=dict(latest.lag), assigned=latest.assigned,
        histogram=latest.histogram.histogram(),
        processed_count=processed[0], processed_us=processed[1],
    )


@dataclass(frozen=True, slots=True, eq=False)
class ServiceView:
    """One service (consumer group) over all its instances."""

    group: str
    app: str
    service: str
    instances: tuple[InstanceView, ...]
    #: the running instances' latest interval histograms, merged
    histogram: Histogram
    #: per ``stream/partition``, the lag in the newest record that reports it
    partition_lag: dict[str, int]
    rate_in: float
    rate_out: float
    #: in the running instances' latest intervals
    errors: int
    exceptions: int
    #: over the latest record of every instance seen
    totals: Counters = field(default_factory=Counters)

    def count(self, status: InstanceStatus) -> int:
        return sum(1 for i in self.instances if i.status == status)

    @property
    def alive(self) -> int:
        """Instances that report in time (running or stalled)."""
        return sum(1 for i in self.instances if i.up)

    @property
    def lag(self) -> int:
        return sum(self.partition_lag.values())

    @property
    def stalled(self) -> bool:
        return self.count("stalled") > 0

    @property
    def silent(self) -> bool:
        """No instance reports in time, and the one heard from last did not stop cleanly."""
        if self.alive or not self.instances:
            return False
        last = max(self.instances, key=lambda i: (i.time_ms, i.status == "stopped"))
        return last.status == "silent"

    @property
    def status(self) -> InstanceStatus:
        if self.alive == 0:
            return "silent" if self.silent else "stopped"
        return "stalled" if self.stalled else "running"

    @property
    def health(self) -> Health:
        """``status``, or ``erroring`` when an instance is up and its latest interval counted
        errors or exceptions."""
        status = self.status
        if status in ("running", "stalled") and (self.errors or self.exceptions):
            return "erroring"
        return status

    def percentile_ms(self, q: float) -> float | None:
        """Processing time (ms) at quantile ``q`` over the latest intervals; None if empty."""
        return self.histogram.percentile(q) / 1000.0 if self.histogram.count else None


def service_view(instances: Sequence[InstanceView]) -> ServiceView:
    """Aggregate the instances of one group (at least one)."""
    ordered = tuple(sorted(instances, key=lambda i: (i.instance, i.time_ms)))
    first = max(ordered, key=lambda i: i.time_ms)
    running = [i for i in ordered if i.up]
    merged = Histogram()
    for inst in running:
        merged.merge(inst.histogram)
    newest: dict[str, tuple[int, int]] = {}  # partition -> (time_ms, lag)
    for inst in ordered:
        for partition, lag in inst.lag.items():
            if partition not in newest or inst.time_ms >= newest[partition][0]:
                newest[partition] = (inst.time_ms, lag)
    return ServiceView(
        group=first.group, app=first.app, service=first.service, instances=ordered,
        histogram=merged,
        partition_lag={p: lag for p, (_, lag) in sorted(newest.items())},
        rate_in=sum(i.rate_in for i in running), rate_out=sum(i.rate_out for i in running),
        errors=sum(i.interval.errors for i in running),
        exceptions=sum(i.interval.exceptions for i in running),
        totals=reduce(add, (i.totals for i in ordered), Counters()),
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every service seen, at ``time_ms``."""

    time_ms: int
    services: tuple[ServiceView, ...]

    def get(self, group: str) -> ServiceView:
        for svc in self.services:
            if svc.group == group:
                return svc
        raise KeyError(group)
