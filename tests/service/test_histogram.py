"""The log-linear histogram: bucket bounds, percentiles, batch recording, serialisation."""

from __future__ import annotations

import random

from millstream.runtime._histogram import Histogram, bucket_of, bucket_value


def test_every_value_lies_in_its_bucket_within_one_thirty_second() -> None:
    for value in [*range(0, 2000), *random.Random(7).sample(range(2000, 10**9), 2000)]:
        index = bucket_of(value)
        assert value <= bucket_value(index)
        assert bucket_value(index) - value <= max(value // 32, 0) + 1
        if index > 0:
            assert bucket_value(index - 1) < value


def test_percentiles_of_a_known_distribution() -> None:
    hist = Histogram()
    for us in range(1, 1001):  # 1 µs .. 1 ms uniformly
        hist.record(us)
    assert hist.count == 1000 and hist.max == 1000 and hist.total == 500500
    for q, exact in ((0.5, 500), (0.9, 900), (0.99, 990)):
        assert exact <= hist.percentile(q) <= exact * 33 // 32 + 1
    assert hist.percentile(1.0) == 1000
    summary = hist.summary()
    assert summary["count"] == 1000 and summary["max_ms"] == 1.0
    assert summary["mean_ms"] == 0.5


def test_record_many_ns_equals_recording_one_by_one() -> None:
    rng = random.Random(3)
    durations = ([rng.randrange(0, 50_000_000) for _ in range(5000)]
                 + [rng.randrange(0, 5_000_000) for _ in range(5000)] + [0, 999, 1000, 4_096_000])
    one, many = Histogram(), Histogram()
    for ns in durations:
        one.record(ns // 1000)
    many.record_many_ns(durations)
    assert (many.buckets, many.count, many.max) == (one.buckets, one.count, one.max)
    assert many.total == sum(durations) // 1000  # rounded once per batch
    assert 0 <= many.total - one.total < len(durations)


def test_merge_and_round_trip() -> None:
    a, b = Histogram(), Histogram()
    for us in (5, 50, 500):
        a.record(us)
    for us in (7, 70_000):
        b.record(us)
    a.merge(b)
    again = Histogram.from_dict(a.to_dict())
    assert (again.buckets, again.count, again.total, again.max) == (
        a.buckets, 5, 70_562, 70_000)
    assert again.percentile(0.5) == 50


def test_sampled_batches_keep_the_exact_record_count() -> None:
    from millstream.runtime._metrics import Metrics

    for records, stride in [(500, 8), (1, 8), (7, 8), (9, 8), (500, 1), (3, 1)]:
        metrics = Metrics("app", "svc", "group", "1")
        samples = -(-records // stride)  # one in `stride`, the first included
        metrics.record_batch([5_000] * samples, stride, records)
        assert metrics.histogram.count == records
        assert metrics.records_in == records
        assert metrics.histogram.percentile(0.5) == 5
