"""Chart series from a group's metrics records: rates, latency percentiles and lag, on one
time axis of equal buckets.

Pure functions over ``MetricsRecord``s (any instances and runs of one group, in any order),
tested with hand-made records. Times are seconds since the epoch, as uPlot wants them.

How records become points:

* **Buckets.** The axis is cut into buckets ``bucket_ms`` wide, aligned on multiples of it
  since the epoch (so two requests agree on them); a point's time is its bucket's start. The
  width is the metrics interval (``bucket_width``: the median ``interval_ms`` of the records,
  rounded to whole seconds, at least one second). Buckets run from the one where the
  earliest record's interval began to the last one that has ended by the newest record's
  time: the bucket still filling is left out until it has ended, unless every run has
  stopped (its newest record is final), when nothing more will come.
* **Rates** (records in and out, errors, exceptions per second). A record counts its
  instance's events in the ``interval_ms`` before its ``time_ms``; they are spread evenly over
  that span, so a bucket gets the share of each record's count that falls inside it, summed
  over instances and runs, divided by the bucket's width. The chart's area is then exactly
  the number counted, and an instance whose record lands in the next bucket is not missed.
  A bucket that no record's span touches (the service was not running) has no value (None).
* **Latency** (p50, p99 in ms). The interval histograms of the records whose ``time_ms`` falls
  in a bucket are merged (added up) and the percentiles read from the merged histogram, never
  averaged from per-instance percentiles. None when the bucket timed no record.
* **Lag** per ``stream/partition``: the value of the newest record in the bucket that reports
  that partition; None where none does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from millstream.errors import InvalidRequestError
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics_record import MetricsRecord

__all__ = ["RATES", "Series", "bucket_width", "parse_since", "partition_order", "series",
           "start_s"]

#: The rate series, by their name in ``Series.rates`` and the counter they come from.
RATES = {"in": "records_in", "out": "records_out", "errors": "errors",
         "exceptions": "exceptions"}

_DIGITS = 3  # rates and milliseconds are rounded to this many decimals


@dataclass(frozen=True, slots=True)
class Series:
    """Points on one time axis: ``times[i]`` is bucket ``i``'s start (s since the epoch)."""

    bucket_s: float
    times: list[float]
    #: per second, by name (``RATES``): in, out, errors, exceptions
    rates: dict[str, list[float | None]]
    #: handler time per record, ms
    p50_ms: list[float | None]
    p99_ms: list[float | None]
    #: records not yet read, by ``stream/partition``
    lag: dict[str, list[int | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The series as a JSON object (what the pages' scripts chart)."""
        return {"bucket_s": self.bucket_s, "times": self.times, "rates": self.rates,
                "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "lag": self.lag}


def bucket_width(records: Iterable[MetricsRecord]) -> int:
    """The buckets' width in ms: the metrics interval, as the median ``interval_ms`` of the
    records that are not final (a final record's interval is cut short), rounded to whole
    seconds, at least 1000; 1000 when there is no such record."""
    intervals = [r.interval_ms for r in records if not r.final and r.interval_ms > 0]
    if not intervals:
        return 1000
    return max(1000, round(statistics.median(intervals) / 1000) * 1000)


def series(records: Sequence[MetricsRecord], *, bucket_ms: int | None = None,
           since: float | None = None) -> Series:
    """The chart series of ``records`` (one group's), in buckets ``bucket_ms`` wide
    (``bucket_width(records)`` if None), only the buckets starting at or after ``since``
    (seconds since the epoch) if given. The module docstring says how points are made."""
    width = bucket_ms if bucket_ms is not None else bucket_width(records)
    if width <= 0:
        raise ValueError(f"bucket_ms must be above 0, got {bucket_ms}")
    if not records:
        return Series(width / 1000, [], {name: [] for name in RATES}, [], [], {})
    first = min(r.time_ms - max(r.interval_ms, 0) for r in records) // width
    end = max(r.time_ms for r in records) // width  # the bucket still filling: left out ...
    if _stopped(records):  # ... unless nothing will fill it any more
        end += 1
    if since is not None:
        first = max(first, -(-round(since * 1000) // width))
    count = max(end - first, 0)
    if since is not None:  # a record whose span ended before the first bucket adds nothing
        floor = first * width
        records = [r for r in records if r.time_ms > floor]
    return Series(width / 1000,
                  [round((first + i) * width / 1000, _DIGITS) for i in range(count)],
                  _rates(records, width, first, count), *_latency(records, width, first, count),
                  lag=_lag(records, width, first, count))


def start_s(records: Iterable[MetricsRecord]) -> float:
    """Where the earliest record's interval began, in seconds since the epoch (0 if there
    is no record): the series' first bucket holds this time."""
    return min((r.time_ms - max(r.interval_ms, 0) for r in records), default=0) / 1000


def _stopped(records: Iterable[MetricsRecord]) -> bool:
    """True when every run's newest record is final (written by a clean stop)."""
    newest: dict[tuple[str, str], MetricsRecord] = {}
    for record in records:
        key = (record.instance, record.run)
        if key not in newest or record.time_ms >= newest[key].time_ms:
            newest[key] = record
    return all(r.final for r in newest.values())


def _rates(records: Iterable[MetricsRecord], width: int, first: int,
           count: int) -> dict[str, list[float | None]]:
    sums = {name: [0.0] * count for name in RATES}
    covered = [0] * count  # ms of the bucket some record's span covers
    for record in records:
        span = max(record.interval_ms, 1)
        begin, stop = record.time_ms - span, record.time_ms
        counters = record.interval
        values = {name: getattr(counters, attr) for name, attr in RATES.items()}
        for index in range(max(begin // width - first, 0), min(stop // width - first + 1, count)):
            low = max(begin, (first + index) * width)
            high = min(stop, (first + index + 1) * width)
            if high <= low:
                continue
            covered[index] += high - low
            for name, value in values.items():
                if value:
                    sums[name][index] += value * (high - low) / span
    per_second = 1000 / width
    return {name: [round(total * per_second, _DIGITS) if covered[i] else None
                   for i, total in enumerate(totals)]
            for name, totals in sums.items()}


def _latency(records: Iterable[MetricsRecord], width: int, first: int,
             count: int) -> tuple[list[float | None], list[float | None]]:
    merged = [Histogram() for _ in range(count)]
    for record in records:
        index = record.time_ms // width - first
        if 0 <= index < count and record.histogram.count:
            merged[index].merge(record.histogram.histogram())
    p50 = [round(h.percentile(0.50) / 1000, _DIGITS) if h.count else None for h in merged]
    p99 = [round(h.percentile(0.99) / 1000, _DIGITS) if h.count else None for h in merged]
    return p50, p99


def _lag(records: Iterable[MetricsRecord], width: int, first: int,
         count: int) -> dict[str, list[int | None]]:
    newest: dict[str, list[tuple[int, int] | None]] = {}  # partition -> (time_ms, lag)
    for record in records:
        index = record.time_ms // width - first
        if not 0 <= index < count:
            continue
        for partition, lag in record.lag.items():
            points = newest.setdefault(partition, [None] * count)
            seen = points[index]
            if seen is None or record.time_ms >= seen[0]:
                points[index] = (record.time_ms, lag)
    return {partition: [p[1] if p is not None else None for p in newest[partition]]
            for partition in sorted(newest, key=partition_order)}


def partition_order(name: str) -> tuple[str, int]:
    """The sort key of a ``stream/partition`` name: by stream, then partition number."""
    stream, _, number = name.rpartition("/")
    return (stream, int(number)) if number.isdecimal() else (name, -1)


def parse_since(text: str | None) -> float | None:
    """A ``since`` query parameter: seconds since the epoch, None when absent or empty.
    Raises ``InvalidRequestError`` naming the text."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidRequestError(
            f"since={text!r} is not a time: give seconds since the epoch (e.g. 1765000000)")
    return value
