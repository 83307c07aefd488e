"""A log-linear latency histogram (HDR-style): constant relative error, cheap to record.

Values are microseconds. Below ``2 ** SUB_BITS`` µs every value has its own bucket; above,
each power of two is split into ``2 ** SUB_BITS`` equal buckets, so a percentile read from the
histogram is within 1/32 (about 3 %) of the true value. Buckets are sparse (a dict), merge by
addition, and serialise as ``{bucket_index: count}`` so instances' histograms can be summed
by whoever reads the metrics stream.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

__all__ = ["Histogram", "bucket_of", "bucket_value"]

SUB_BITS = 5
_SUB = 1 << SUB_BITS


def bucket_of(micros: int) -> int:
    """The bucket index of a value in µs (values below 0 count as 0)."""
    if micros < _SUB:
        return max(micros, 0)
    shift = micros.bit_length() - SUB_BITS - 1
    return ((shift + 1) << SUB_BITS) + ((micros >> shift) - _SUB)


def bucket_value(index: int) -> int:
    """The highest value (µs) a bucket holds: percentiles are reported as this bound."""
    if index < _SUB:
        return index
    shift = (index >> SUB_BITS) - 1
    sub = index & (_SUB - 1)
    return ((_SUB + sub + 1) << shift) - 1


_TABLE = [bucket_of(us) for us in range(4096)]  # µs -> bucket, for the batch path
_TABLE_LIMIT_NS = 4096 * 1000


class Histogram:
    """Counts of values per bucket, plus exact count, sum and maximum."""

    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.max = 0

    def record(self, micros: int) -> None:
        index = bucket_of(micros)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total += micros
        if micros > self.max:
            self.max = micros

    def record_many_ns(self, durations: list[int], weight: int = 1) -> None:
        """Record many values given in nanoseconds (the runner's per-batch call), each
        standing for ``weight`` values (sampling): buckets from a table below 4 ms, counted
        by C code; ``total`` gains the batch's sum rounded down to a microsecond once."""
        if not durations:
            return
        table = _TABLE
        limit = _TABLE_LIMIT_NS
        indices = [table[ns // 1000] if 0 <= ns < limit else bucket_of(ns // 1000)
                   for ns in durations]
        buckets = self.buckets
        for index, n in Counter(indices).items():
            buckets[index] = buckets.get(index, 0) + n * weight
        self.count += len(durations) * weight
        self.total += max(sum(durations), 0) * weight // 1000
        self.max = max(self.max, max(durations) // 1000)

    def merge(self, other: Histogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> int:
        """The value (µs) at or below which a fraction ``q`` (0..1) of values lie; 0 if empty."""
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(q * self.count - 1e-9))  # nearest rank
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(bucket_value(index), self.max)
        return self.max

    def summary(self) -> dict[str, float]:
        """count, mean and p50/p90/p99/max in milliseconds."""
        return {
            "count": self.count,
            "mean_ms": round(self.total / self.count / 1000.0, 3) if self.count else 0.0,
            "p50_ms": self.percentile(0.50) / 1000.0,
            "p90_ms": self.percentile(0.90) / 1000.0,
            "p99_ms": self.percentile(0.99) / 1000.0,
            "max_ms": self.max / 1000.0,
        }

    def to_dict(self) -> dict[str, object]:
        return {"buckets": {str(k): v for k, v in sorted(self.buckets.items())},
                "count": self.count, "total_us": self.total, "max_us": self.max}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Histogram:
        hist = cls()
        buckets = data.get("buckets", {})
        if isinstance(buckets, Mapping):
            hist.buckets = {int(k): int(v) for k, v in buckets.items()}
        hist.count = int(data.get("count", 0))  # type: ignore[call-overload]
        hist.total = int(data.get("total_us", 0))  # type: ignore[call-overload]
        hist.max = int(data.get("max_us", 0))  # type: ignore[call-overload]
        return hist
