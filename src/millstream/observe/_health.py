"""Watching services from ``millstream.metrics``: rate, latency, errors, lag and health per service.

Every service instance writes a metrics record every few seconds and a ``final`` one when it
stops (``millstream.runtime._metrics`` documents the JSON). This module reads them back:

* ``MetricsTable`` keeps the last two records of each instance and, at a given time, turns
  them into frozen views — ``InstanceView`` per instance, ``ServiceView`` per group — through
  pure functions (``instance_view``, ``service_view``, ``is_stalled``), so the arithmetic is
  tested with hand-built records;
* ``MetricsView`` feeds a table from a standalone consumer of the stream, starting a while
  back (``since_ms``) and then tailing; its clock is injectable;
* ``prometheus_text`` renders a snapshot in the Prometheus text format 0.0.4.

An instance — one run of a service process, told apart by the record's ``run`` id — is
*stopped* once its latest record is final, *silent* when its latest record is older than
``max(3 × interval_ms, silent_floor_ms)``, *stalled* when it owns partitions, read nothing in
its last two intervals and its lag is above 0 and not falling; otherwise it is *running*. A
service is stalled when one of its running instances is, running when one runs. When none
runs, the instance heard from last decides: *stopped* if it stopped cleanly (a run killed
earlier and restarted does not make a clean stop look silent), *silent* if it went quiet.
Totals add up every instance seen, so restarts and parallel instances all count.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from millstream._wellknown import METRICS
from millstream.records import StreamPartition
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics import COUNTERS
from millstream.streams._base import Streams

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_SINCE_MS",
    "SILENT_FACTOR",
    "SILENT_FLOOR_MS",
    "InstanceStatus",
    "InstanceView",
    "MetricsTable",
    "MetricsView",
    "ServiceView",
    "Snapshot",
    "instance_view",
    "is_stalled",
    "prometheus_text",
    "service_view",
    "silence_threshold_ms",
    "wall_clock_ms",
]

log = logging.getLogger(__name__)

DEFAULT_SINCE_MS = 10 * 60 * 1000
SILENT_FACTOR = 3
#: Below this an instance is never silent, however short its interval (final and first
#: records can report a few milliseconds).
SILENT_FLOOR_MS = 10_000
#: The Prometheus text exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4"

InstanceStatus = Literal["running", "stalled", "silent", "stopped"]
Doc = Mapping[str, Any]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


# -- the pure part ------------------------------------------------------------------------------


def _counters(doc: Doc, name: str) -> dict[str, int]:
    raw = doc.get(name) or {}
    return {k: int(raw.get(k, 0)) for k in COUNTERS}


def _lag(doc: Doc) -> dict[str, int]:
    return {str(k): int(v) for k, v in (doc.get("lag") or {}).items()}


def silence_threshold_ms(latest: Doc, previous: Doc | None = None,
                         floor_ms: int = SILENT_FLOOR_MS) -> int:
    """How long after its latest record an instance counts as silent."""
    interval = max(int(d.get("interval_ms", 0)) for d in (latest, previous) if d is not None)
    return max(SILENT_FACTOR * interval, floor_ms)


def is_stalled(latest: Doc, previous: Doc | None) -> bool:
    """Assigned partitions (the same in both records), nothing read in either interval, and
    lag above 0 that did not fall."""
    if previous is None or not latest.get("assigned"):
        return False
    if sorted(latest["assigned"]) != sorted(previous.get("assigned") or ()):
        return False  # a rebalance in between: the two lags are not comparable
    if _counters(latest, "interval")["in"] or _counters(previous, "interval")["in"]:
        return False
    now, before = sum(_lag(latest).values()), sum(_lag(previous).values())
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
    interval: dict[str, int]
    totals: dict[str, int]
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
        return self.interval["in"] * 1000.0 / self.interval_ms

    @property
    def rate_out(self) -> float:
        return self.interval["out"] * 1000.0 / self.interval_ms


def instance_view(latest: Doc, previous: Doc | None, now_ms: int, *,
                  silent_floor_ms: int = SILENT_FLOOR_MS,
                  processed: tuple[int, int] = (0, 0)) -> InstanceView:
    """The view of one instance from its latest (and previous) record at time ``now_ms``."""
    status: InstanceStatus
    if latest.get("final"):
        status = "stopped"
    elif now_ms - int(latest["time_ms"]) > silence_threshold_ms(latest, previous,
                                                                silent_floor_ms):
        status = "silent"
    elif is_stalled(latest, previous):
        status = "stalled"
    else:
        status = "running"
    return InstanceView(
        app=str(latest.get("app", "")), service=str(latest.get("service", "")),
        group=str(latest["group"]), instance=str(latest["instance"]),
        version=str(latest.get("version", "")), run=str(latest.get("run", "")),
        time_ms=int(latest["time_ms"]),
        interval_ms=max(int(latest.get("interval_ms", 1)), 1), status=status,
        interval=_counters(latest, "interval"), totals=_counters(latest, "totals"),
        lag=_lag(latest), assigned=tuple(str(a) for a in latest.get("assigned") or ()),
        histogram=Histogram.from_dict(latest.get("histogram") or {}),
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
    totals: dict[str, int] = field(default_factory=dict)

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
    def status(self) -> Literal["running", "stalled", "silent", "stopped"]:
        if self.alive == 0:
            return "silent" if self.silent else "stopped"
        return "stalled" if self.stalled else "running"

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
        errors=sum(i.interval["errors"] for i in running),
        exceptions=sum(i.interval["exceptions"] for i in running),
        totals={k: sum(i.totals[k] for i in ordered) for k in COUNTERS},
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


@dataclass(slots=True)
class _Track:
    latest: Doc
    previous: Doc | None = None
    processed_count: int = 0
    processed_us: int = 0


class MetricsTable:
    """The last two metrics records of every instance, fed in stream order."""

    def __init__(self, *, silent_floor_ms: int = SILENT_FLOOR_MS) -> None:
        self.silent_floor_ms = silent_floor_ms
        self._tracks: dict[tuple[str, str, str], _Track] = {}  # (group, instance, run)
        #: records that were not service metrics documents
        self.skipped = 0

    def add(self, doc: Doc) -> bool:
        """Take one metrics document; False (and ignored) if it is not one or is older than
        the instance's latest."""
        try:
            if doc.get("kind") != "service":
                raise ValueError(f"kind {doc.get('kind')!r}")
            key = (str(doc["group"]), str(doc["instance"]), str(doc.get("run", "")))
            when = int(doc["time_ms"])
            hist = doc.get("histogram") or {}
            count, total = int(hist.get("count", 0)), int(hist.get("total_us", 0))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.debug("not a service metrics record (%s): %r", exc, doc)
            self.skipped += 1
            return False
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(doc, None, count, total)
            self._lifetime(track, doc)
            return True
        if when < int(track.latest["time_ms"]):
            return False
        track.previous, track.latest = track.latest, doc
        track.processed_count += count
        track.processed_us += total
        self._lifetime(track, doc)
        return True

    @staticmethod
    def _lifetime(track: _Track, doc: Doc) -> None:
        """Prefer the instance's own since-start processing totals when it reports them."""
        lifetime = doc.get("processing_total")
        if isinstance(lifetime, dict):
            try:
                track.processed_count = int(lifetime["count"])
                track.processed_us = int(lifetime["total_us"])
            except (KeyError, TypeError, ValueError):
                pass

    def add_bytes(self, value: bytes | None) -> bool:
        """Take one record value (JSON); False if it is not a metrics document."""
        try:
            doc = json.loads(value) if value is not None else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self.skipped += 1
            return False
        return self.add(doc)

    def snapshot(self, now_ms: int) -> Snapshot:
        by_group: dict[str, list[InstanceView]] = {}
        for (group, _, _), track in sorted(self._tracks.items()):
            by_group.setdefault(group, []).append(instance_view(
                track.latest, track.previous, now_ms, silent_floor_ms=self.silent_floor_ms,
                processed=(track.processed_count, track.processed_us)))
        return Snapshot(now_ms, tuple(service_view(v) for _, v in sorted(by_group.items())))


# -- reading the stream -------------------------------------------------------------------------


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


# -- Prometheus text format 0.0.4 ---------------------------------------------------------------

_INSTANCE_LABELS = ("app", "service", "group", "instance")
_COUNTER_HELP = {
    "in": ("millstream_records_in_total", "Records the instance read and handled."),
    "out": ("millstream_records_out_total", "Records the instance wrote."),
    "errors": ("millstream_errors_total", "Handler failures, retried or not."),
    "retries": ("millstream_retries_total", "Handler retries."),
    "exceptions": ("millstream_exceptions_total",
                   "Records given up on and written to millstream.exceptions."),
}
_QUANTILES = (0.5, 0.9, 0.99)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _family(out: list[str], name: str, kind: str, text: str) -> None:
    out.append(f"# HELP {name} {_escape_help(text)}")
    out.append(f"# TYPE {name} {kind}")


def _split_partition(key: str) -> tuple[str, str]:
    stream, _, partition = key.rpartition("/")
    return stream, partition


def prometheus_text(view: MetricsView | Snapshot) -> str:
    """The services in ``view`` (a snapshot, or a view's snapshot now) as Prometheus text."""
    snap = view.snapshot() if isinstance(view, MetricsView) else view
    # one series per instance label: a run restarted under the same instance continues it
    # (its counters restart from 0, which Prometheus reads as a counter reset)
    newest: dict[tuple[str, str], InstanceView] = {}
    for inst in (i for svc in snap.services for i in svc.instances):
        ident_key = (inst.group, inst.instance)
        if ident_key not in newest or inst.time_ms >= newest[ident_key].time_ms:
            newest[ident_key] = inst
    instances = list(newest.values())

    def ident(inst: InstanceView) -> list[tuple[str, str]]:
        return [(k, str(getattr(inst, k))) for k in _INSTANCE_LABELS]

    out: list[str] = []
    for counter in COUNTERS:
        name, text = _COUNTER_HELP[counter]
        _family(out, name, "counter", text)
        out.extend(f"{name}{_labels(ident(i))} {i.totals[counter]}" for i in instances)
    _family(out, "millstream_up", "gauge",
            "1 if the instance's metrics arrive in time, 0 if it is silent or stopped.")
    out.extend(f"millstream_up{_labels(ident(i))} {int(i.up)}" for i in instances)
    _family(out, "millstream_stalled", "gauge",
            "1 if a running instance of the service owns partitions with lag but reads nothing.")
    for svc in snap.services:
        labels = _labels([("app", svc.app), ("service", svc.service), ("group", svc.group)])
        out.append(f"millstream_stalled{labels} {int(svc.stalled)}")
    _family(out, "millstream_lag", "gauge",
            "Records not yet read by the group, per partition (newest report).")
    for svc in snap.services:
        for key, lag in svc.partition_lag.items():
            stream, partition = _split_partition(key)
            labels = _labels([("group", svc.group), ("stream", stream), ("partition", partition)])
            out.append(f"millstream_lag{labels} {lag}")
    name = "millstream_processing_seconds"
    _family(out, name, "summary",
            "Handler time per record: quantiles over the latest interval; count and sum since "
            "the instance started.")
    for inst in instances:
        for q in _QUANTILES:
            value = (inst.histogram.percentile(q) / 1e6 if inst.histogram.count else math.nan)
            out.append(f"{name}{_labels([*ident(inst), ('quantile', str(q))])} {_number(value)}")
        out.append(f"{name}_count{_labels(ident(inst))} {inst.processed_count}")
        out.append(f"{name}_sum{_labels(ident(inst))} {_number(inst.processed_us / 1e6)}")
    return "\n".join(out) + "\n"
