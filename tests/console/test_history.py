"""The console's memory of millstream.metrics: at start it reads back exactly the records of
the last ``keep`` seconds (by record time), then follows the stream; records that fall out of
the window are dropped; what is not a metrics record is counted and left out; before any
service has run it waits for the stream and reports itself replayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from millstream import Streams
from millstream._wellknown import METRICS
from millstream.console import MetricsHistory
from millstream.runtime._metrics_record import Counters, MetricsRecord


def _record(group: str, instance: str, time_ms: int, records_in: int) -> MetricsRecord:
    return MetricsRecord(app="shop", service=group.split(".")[1], group=group,
                         instance=instance, run="r1", time_ms=time_ms, interval_ms=1000,
                         interval=Counters(records_in=records_in))


@pytest.fixture
def streams(tmp_path: object) -> Iterator[Streams]:
    import millstream

    with millstream.open_streams("local:") as streams:
        yield streams


def _write(streams: Streams, records: list[MetricsRecord | bytes]) -> None:
    streams.admin().ensure_stream(METRICS, partitions=1)
    with streams.open_producer() as producer:
        for r in records:
            if isinstance(r, bytes):
                producer.send(METRICS, r)
            else:
                producer.send(METRICS, r.to_json(), timestamp=r.time_ms)
        producer.flush()


def test_it_replays_exactly_the_kept_window_then_follows_the_stream(streams: Streams) -> None:
    now = time.time()
    ms = round(now * 1000)
    old = [_record("shop.orders", "h:1", ms - 7_200_000 + i * 1000, i) for i in range(3)]
    kept = [_record("shop.orders", "h:1", ms - 1_800_000 + i * 1000, 10 + i) for i in range(4)]
    other = [_record("shop.bill", "h:2", ms - 60_000, 99)]
    _write(streams, [*old, *kept, b"not json", *other])
    history = MetricsHistory(streams, keep=3600).start()
    try:
        assert history.replayed.wait(10)
        assert history.groups() == ["shop.bill", "shop.orders"]
        assert [r.interval.records_in for r in history.records("shop.orders")] == [10, 11, 12, 13]
        assert [r.interval.records_in for r in history.records()] == [10, 11, 12, 13, 99]
        assert history.skipped == 1
        assert {g: [r.instance for r in rs] for g, rs in history.latest().items()} == {
            "shop.bill": ["h:2"], "shop.orders": ["h:1"]}
        _write(streams, [_record("shop.orders", "h:1", ms + 1000, 14)])
        deadline = time.monotonic() + 10
        while len(history.records("shop.orders")) < 5:
            assert time.monotonic() < deadline, "the new record was not followed"
            time.sleep(0.05)
        assert history.records("shop.orders")[-1].interval.records_in == 14
        assert [s.group for s in history.snapshot().services] == ["shop.bill", "shop.orders"]
    finally:
        history.stop()


def test_records_that_fall_out_of_the_window_are_dropped(streams: Streams) -> None:
    clock = [1_000_000.0]
    history = MetricsHistory(streams, keep=60, clock=lambda: clock[0])
    for i in range(5):
        history.add(_record("shop.orders", "h:1", round((clock[0] - 100 + i * 30) * 1000), i))
    # at -100, -70, -40, -10 and +20 s: the last 60 s hold the last three
    assert [r.interval.records_in for r in history.records("shop.orders")] == [2, 3, 4]
    clock[0] += 30
    assert [r.interval.records_in for r in history.records("shop.orders")] == [3, 4]


def test_without_a_metrics_stream_it_waits_and_says_it_replayed(streams: Streams) -> None:
    history = MetricsHistory(streams, keep=60).start()
    try:
        assert history.replayed.wait(5)
        assert (history.groups(), history.error) == ([], None)
        _write(streams, [_record("shop.orders", "h:1", round(time.time() * 1000), 7)])
        deadline = time.monotonic() + 10
        while not history.records("shop.orders"):
            assert time.monotonic() < deadline, "the stream made later was not read"
            time.sleep(0.05)
        assert [r.interval.records_in for r in history.records("shop.orders")] == [7]
    finally:
        history.stop()


def test_keep_must_be_positive(streams: Streams) -> None:
    with pytest.raises(ValueError, match=r"keep=0: the history must keep some seconds"):
        MetricsHistory(streams, keep=0)


def test_a_consumer_opened_again_after_an_error_goes_on_where_it_stopped(
        streams: Streams) -> None:
    ms = round(time.time() * 1000)
    _write(streams, [_record("shop.orders", "h:1", ms - 5000 + i * 1000, i) for i in range(3)])
    history = MetricsHistory(streams, keep=3600, poll_timeout=0.1)
    opened = []
    real_open = history._open

    def open_and_count() -> Any:
        consumer = real_open()
        opened.append(consumer)
        return consumer

    history._open = open_and_count  # type: ignore[method-assign]
    history.start()
    try:
        assert history.replayed.wait(10)
        assert [r.interval.records_in for r in history.records("shop.orders")] == [0, 1, 2]
        def failing_poll(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("injected: the broker went away")

        opened[-1].poll = failing_poll  # the next poll fails: the thread opens another
        deadline = time.monotonic() + 10
        while len(opened) < 2 or history.error is not None:
            assert time.monotonic() < deadline, "the history did not reopen its consumer"
            time.sleep(0.05)
        _write(streams, [_record("shop.orders", "h:1", ms + 1000, 3)])
        while len(history.records("shop.orders")) < 4:
            assert time.monotonic() < deadline, "the record after the reopening was not read"
            time.sleep(0.05)
        time.sleep(0.5)  # time to read anything twice, if it did
        assert [r.interval.records_in for r in history.records("shop.orders")] == [0, 1, 2, 3]
    finally:
        history.stop()


def test_a_record_from_a_clock_far_ahead_is_left_out(streams: Streams) -> None:
    clock = [1_000_000.0]
    history = MetricsHistory(streams, keep=60, clock=lambda: clock[0])
    now_ms = round(clock[0] * 1000)
    history.add(_record("shop.orders", "h:1", now_ms + 60_000, 1))  # a minute ahead: kept
    history.add(_record("shop.orders", "h:2", now_ms + 3_600_000, 2))  # an hour: left out
    assert [r.interval.records_in for r in history.records("shop.orders")] == [1]


def test_instances_that_left_the_window_are_forgotten_by_the_health_model(
        streams: Streams) -> None:
    from millstream.console import _history

    clock = [1_000_000.0]
    history = MetricsHistory(streams, keep=60, clock=lambda: clock[0])
    history.add(_record("shop.gone", "h:9", round(clock[0] * 1000), 1))
    clock[0] += 120  # shop.gone's only record is now two minutes old
    for i in range(_history._FORGET_EVERY):
        history.add(_record("shop.orders", "h:1", round(clock[0] * 1000) + i, i))
    assert [s.group for s in history.snapshot().services] == ["shop.orders"]
    assert history.groups() == ["shop.orders"]
