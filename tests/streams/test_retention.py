"""Retention on the embedded log: by age, by size, and a reader left behind by it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import millstream
from millstream import Retention, StreamPartition
from millstream.streams._local import LocalStreams


def open_log(tmp_path: Path) -> LocalStreams:
    """A log whose producers leave retention to ``enforce_retention`` (deterministic tests)."""
    streams = millstream.open_streams(f"local:{tmp_path / 'log'}?retention_check_ms=3600000")
    assert isinstance(streams, LocalStreams)
    return streams


def test_forever_is_the_default(tmp_path: Path) -> None:
    with open_log(tmp_path) as streams:
        info = streams.admin().create_stream("events")
        assert info.retention.forever and info.retention.describe() == "forever"
        with streams.open_producer() as producer:
            producer.send("events", b"old", timestamp=1).wait(10)
        assert streams.admin().enforce_retention() == 0
        assert streams.admin().describe_stream("events").partitions[0].start == 0


def test_retention_ages_are_seconds_and_are_kept_to_the_millisecond(tmp_path: Path) -> None:
    with open_log(tmp_path) as streams:
        admin = streams.admin()
        admin.create_stream("short", retention=Retention(max_age=1.5, compact=True,
                                                         tombstone_age=0.25))
        assert admin.describe_stream("short").retention == Retention(
            max_age=1.5, compact=True, tombstone_age=0.25)
        assert admin.describe_stream("short").retention.describe() == "age ≤ 1.5 s, compacted"
    for bad in (0, 0.0004, -1, True, "60"):
        with pytest.raises(millstream.InvalidRequestError, match=f"max_age={bad!r} must be"):
            Retention(max_age=bad)  # type: ignore[arg-type]
    with pytest.raises(millstream.InvalidRequestError, match=r"tombstone_age=-0\.5 must be"):
        Retention(tombstone_age=-0.5)
    with pytest.raises(TypeError, match="max_age_ms"):
        Retention(max_age_ms=60_000)  # type: ignore[call-arg]


def test_age_retention_drops_old_batches_and_moves_the_start(tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    with open_log(tmp_path) as streams:
        streams.admin().create_stream("clicks", retention=Retention(max_age=60))
        with streams.open_producer() as producer:
            for i in range(10):  # ten old records, one batch each
                producer.send("clicks", b"old", timestamp=now - 3_600_000 + i).wait(10)
            for _ in range(5):
                producer.send("clicks", b"new", timestamp=now).wait(10)
        removed = streams.admin().enforce_retention()
        assert removed == 10
        part = streams.admin().describe_stream("clicks").partitions[0]
        assert (part.start, part.end, part.bytes) == (10, 15, 15)
        with streams.open_consumer() as consumer:
            consumer.subscribe(["clicks"])
            records = consumer.poll(100, timeout=2)
            assert [(r.offset, r.value) for r in records] == [(i, b"new") for i in range(10, 15)]
            with pytest.raises(millstream.OffsetOutOfRangeError, match=r"10\.\.15"):
                consumer.seek(StreamPartition("clicks", 0), 3)


def test_size_retention_keeps_the_newest_batches_within_the_bound(tmp_path: Path) -> None:
    with open_log(tmp_path) as streams:
        streams.admin().create_stream("logs", retention=Retention(max_bytes=1000))
        with streams.open_producer() as producer:
            for _ in range(20):
                producer.send("logs", b"x" * 100).wait(10)  # one 100-byte batch each
        streams.admin().enforce_retention()
        part = streams.admin().describe_stream("logs").partitions[0]
        assert part.bytes == 1000 and (part.start, part.end) == (10, 20)


def test_a_group_left_behind_by_retention_gets_a_clear_error(tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    with open_log(tmp_path) as streams:
        streams.admin().create_stream("audit", retention=Retention(max_age=60))
        with streams.open_producer() as producer:
            for i in range(6):
                producer.send("audit", f"{i}".encode(), timestamp=now - 3_600_000).wait(10)
            producer.send("audit", b"fresh", timestamp=now).wait(10)
        with streams.open_consumer("slow-readers") as consumer:
            consumer.subscribe(["audit"])
            assert len(consumer.poll(2, timeout=2)) == 2
            consumer.commit()
        streams.admin().enforce_retention()
        behind = streams.admin().describe_group("slow-readers").partitions[0]
        assert (behind.committed, behind.start, behind.end, behind.lag) == (2, 6, 7, 1)
        with streams.open_consumer("slow-readers") as consumer:
            consumer.subscribe(["audit"])
            with pytest.raises(millstream.OffsetOutOfRangeError) as info:
                consumer.poll(10, timeout=2)
            message = str(info.value)
            assert "'slow-readers'" in message and "offset 2 of audit[0]" in message
            assert "before 6" in message and "seek_to_beginning" in message
            consumer.seek_to_beginning()
            assert [r.value for r in consumer.poll(10, timeout=2)] == [b"fresh"]


def test_a_producer_applies_retention_as_it_writes(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}?retention_check_ms=1"
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("metrics", retention=Retention(max_bytes=500))
        with streams.open_producer() as producer:
            for _ in range(30):
                # a producer checks retention when retention_check_ms has passed since its
                # last check; 2 ms apart, every append is due one (the last one included)
                time.sleep(0.002)
                producer.send("metrics", b"m" * 100).wait(10)
        part = streams.admin().describe_stream("metrics").partitions[0]
        assert part.end == 30 and part.bytes <= 600 and part.start >= 24


def test_compacted_streams_need_keys(tmp_path: Path) -> None:
    with open_log(tmp_path) as streams:
        streams.admin().create_stream("table-feed", retention=Retention(compact=True))
        with streams.open_producer() as producer, \
                pytest.raises(millstream.InvalidRequestError, match="needs a key"):
            producer.send("table-feed", b"v")
