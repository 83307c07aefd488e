"""Chart series from hand-made metrics records: buckets, rates spread over each record's
interval and summed over instances, latency from merged histograms, lag per partition."""

from __future__ import annotations

from typing import Any

import pytest

from millstream.console._series import bucket_width, parse_since, series, start_s
from millstream.errors import InvalidRequestError
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics_record import Counters, MetricsRecord, RecordedHistogram


def rec(time_ms: int, interval_ms: int = 1000, *, instance: str = "a", run: str = "r1",
        final: bool = False, times_us: tuple[tuple[int, int], ...] = (),
        lag: dict[str, int] | None = None, **counts: int) -> MetricsRecord:
    """A record of group ``g``: ``counts`` are the interval's counters (records_in=...),
    ``times_us`` (value µs, how many) its histogram."""
    hist = Histogram()
    for micros, n in times_us:
        for _ in range(n):
            hist.record(micros)
    fields: dict[str, Any] = {"group": "g", "instance": instance, "run": run,
                              "time_ms": time_ms, "interval_ms": interval_ms,
                              "interval": Counters(**counts), "final": final,
                              "histogram": RecordedHistogram.of(hist), "lag": lag or {}}
    return MetricsRecord(**fields)


def test_the_bucket_width_is_the_median_interval_rounded_to_seconds_leaving_out_final_ones():
    assert bucket_width([rec(1, 1000), rec(2, 1040), rec(3, 990), rec(4, 30, final=True)]) \
        == 1000
    assert bucket_width([rec(1, 5010), rec(2, 4990), rec(3, 5600)]) == 5000
    assert bucket_width([rec(1, 200), rec(2, 300)]) == 1000  # at least one second
    assert bucket_width([]) == 1000
    assert bucket_width([rec(1, 40, final=True)]) == 1000


def test_one_instance_gives_its_interval_counts_per_second_in_the_buckets_they_cover():
    records = [rec(10_000, records_in=5), rec(11_000, records_in=20, records_out=40),
               rec(12_000, records_in=30), rec(13_500, 1500, records_in=30, records_out=3)]
    s = series(records)
    assert s.bucket_s == 1.0
    assert start_s(records) == 9.0
    assert start_s([]) == 0
    # from where the earliest record's interval began (9 s) to the last bucket ended by
    # 13.5 s ([13, 14) is still filling)
    assert s.times == [9.0, 10.0, 11.0, 12.0]
    assert s.rates["in"] == [5.0, 20.0, 30.0, 20.0]  # 30 over 1.5 s: 20 of them in [12, 13)
    assert s.rates["out"] == [0.0, 40.0, 0.0, 2.0]
    assert s.rates["errors"] == [0.0, 0.0, 0.0, 0.0]


def test_two_instances_out_of_step_are_summed_each_spread_over_its_own_interval():
    a = [rec(10_000, instance="a", records_in=100), rec(11_000, instance="a", records_in=10),
         rec(12_000, instance="a", records_in=10), rec(13_000, instance="a", records_in=10)]
    b = [rec(10_500, instance="b", records_in=20), rec(11_500, instance="b", records_in=20),
         rec(12_500, instance="b", records_in=40)]
    s = series(sorted(a + b, key=lambda r: r.time_ms))
    assert s.times == [9.0, 10.0, 11.0, 12.0]
    # [9, 10): a's first (100) + half of b's first, at 10.5 (10)
    # [10, 11): a's 10 + b's other half (10) + half of b's at 11.5 (10)
    # [11, 12): a's 10 + b's other half (10) + half of b's at 12.5 (20)
    # [12, 13): a's 10 + b's other half (20) and nothing yet for [12.5, 13)
    assert s.rates["in"] == [110.0, 30.0, 40.0, 30.0]
    # the area is everything the records counted: a's 130 and b's 80
    assert sum(v or 0 for v in s.rates["in"]) * s.bucket_s == 210.0


def test_a_restart_is_a_new_run_whose_counts_add_and_a_stop_leaves_buckets_without_value():
    first_run = [rec(10_000, run="r1", records_in=10, errors=2, exceptions=1),
                 rec(11_000, run="r1", records_in=10, errors=4, exceptions=2),
                 rec(11_200, 200, run="r1", final=True, records_in=4)]
    second_run = [rec(15_000, 1000, run="r2", records_in=50, errors=1),
                  rec(16_000, run="r2", records_in=60),
                  rec(17_000, run="r2", records_in=70)]
    s = series(first_run + second_run)
    assert s.times == [9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert s.rates["in"] == [10.0, 10.0, 4.0, None, None, 50.0, 60.0, 70.0]
    assert s.rates["errors"] == [2.0, 4.0, 0.0, None, None, 1.0, 0.0, 0.0]
    assert s.rates["exceptions"] == [1.0, 2.0, 0.0, None, None, 0.0, 0.0, 0.0]


def test_once_every_run_has_stopped_the_last_bucket_is_shown_too():
    records = [rec(10_000, records_in=10), rec(11_000, records_in=10),
               rec(11_500, 500, final=True, records_in=5)]
    s = series(records)
    assert s.times == [9.0, 10.0, 11.0]
    assert s.rates["in"] == [10.0, 10.0, 5.0]
    running = series([*records[:2], rec(11_500, 500, run="r2", records_in=5)])
    assert running.times == [9.0, 10.0]


def test_latency_comes_from_the_merged_histograms_not_from_averaged_percentiles():
    # 8063 µs and 1007 µs are bucket bounds, so the percentiles read back exactly
    records = [rec(10_000, instance="a"), rec(10_000, instance="b"),
               rec(11_000, instance="a", records_in=90, times_us=((1007, 90),)),
               rec(11_400, instance="b", records_in=10, times_us=((8063, 10),)),
               rec(12_000, instance="a", records_in=1, times_us=((2015, 1),)),
               rec(13_000, instance="a")]
    s = series(records)
    assert s.times == [9.0, 10.0, 11.0, 12.0]
    # [11, 12): 100 records merged, 90 of them 1.007 ms: p50 1.007, p99 8.063
    # (averaging a's and b's own p99s would say 4.535)
    assert s.p50_ms == [None, None, 1.007, 2.015]
    assert s.p99_ms == [None, None, 8.063, 2.015]


def test_lag_per_partition_is_the_newest_report_in_each_bucket_in_partition_order():
    records = [rec(10_100, instance="a", lag={"orders/0": 7, "orders/10": 1}),
               rec(10_100, instance="b", lag={"orders/2": 3}),
               rec(10_900, instance="a", lag={"orders/0": 5, "orders/10": 2}),
               rec(11_100, instance="a", lag={"orders/0": 4}),  # orders/10 moved away
               rec(12_100, instance="b", lag={"orders/2": 0, "orders/10": 9}),
               rec(13_000, instance="b")]
    s = series(records)
    assert s.times == [9.0, 10.0, 11.0, 12.0]
    assert list(s.lag) == ["orders/0", "orders/2", "orders/10"]
    assert s.lag == {"orders/0": [None, 5, 4, None], "orders/2": [None, 3, None, 0],
                     "orders/10": [None, 2, None, 9]}


def test_since_keeps_the_buckets_starting_at_or_after_it_with_the_same_values():
    records = [rec(t, records_in=t // 1000) for t in range(10_000, 16_000, 1000)]
    whole = series(records)
    assert whole.times == [9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    assert whole.rates["in"] == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    tail = series(records, since=12.5)
    assert tail.times == [13.0, 14.0]
    assert tail.rates["in"] == [14.0, 15.0]
    assert series(records, since=12.0).times == [12.0, 13.0, 14.0]
    assert series(records, since=20.0).times == []


def test_a_bucket_width_can_be_given_and_buckets_align_on_its_multiples():
    records = [rec(t, records_in=10) for t in range(10_000, 17_000, 1000)]
    s = series(records, bucket_ms=5000)
    assert s.bucket_s == 5.0
    assert s.times == [5.0, 10.0]  # [15, 20) is still filling at 16 s
    assert s.rates["in"] == [2.0, 10.0]  # [5, 10): the first record's 10, over 5 s
    assert series([], bucket_ms=2000).to_json() == {
        "bucket_s": 2.0, "times": [], "p50_ms": [], "p99_ms": [], "lag": {},
        "rates": {"in": [], "out": [], "errors": [], "exceptions": []}}
    with pytest.raises(ValueError, match="bucket_ms must be above 0, got 0"):
        series(records, bucket_ms=0)


def test_since_is_read_from_seconds_and_bad_text_is_refused_naming_it():
    assert parse_since(None) is None
    assert parse_since(" ") is None
    assert parse_since("1765000000.5") == 1765000000.5
    for bad in ("yesterday", "-1", "nan", "inf"):
        with pytest.raises(InvalidRequestError, match=f"since={bad!r} is not a time"):
            parse_since(bad)
