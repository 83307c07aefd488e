"""Reading a stream for people (console/_browse.py) on the embedded log: exact offsets for
pages, times, searches by key and the live tail, and the bounds each stops at."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import millstream
from millstream.console._browse import (
    describe_all,
    offset_for_time,
    read_page,
    search_key,
    stream_bytes,
    tail,
)
from millstream.errors import InvalidRequestError
from millstream.streams._base import Streams
from millstream.streams._info import Retention

T0 = 1_700_000_000_000


@pytest.fixture
def streams() -> Iterator[Streams]:
    """``orders``: partition 0 holds offsets 0..9 (keys k0, k1, k2, k0, …; values {"n": i};
    stamped T0 + i s), partition 1 offsets 0..4 (binary, key 00ff, stamped T0 + i s + 0.5 s);
    ``audit`` keeps an hour."""
    with millstream.open_streams() as opened:
        admin = opened.admin()
        admin.create_stream("orders", 2)
        admin.create_stream("audit", 1, Retention(max_age=3600))
        with opened.open_producer() as producer:
            for i in range(10):
                producer.send("orders", json.dumps({"n": i}).encode(), key=f"k{i % 3}".encode(),
                              partition=0, timestamp=T0 + i * 1000)
            for i in range(5):
                producer.send("orders", bytes([i, 0xFF]), key=b"\x00\xff", partition=1,
                              timestamp=T0 + i * 1000 + 500)
            producer.flush()
        yield opened


def offsets(records: object) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]  # type: ignore[attr-defined]


def test_every_stream_with_its_partitions_ranges_bytes_and_retention(streams: Streams) -> None:
    infos = {info.name: info for info in describe_all(streams)}
    assert sorted(infos) == ["audit", "orders"]
    orders = infos["orders"]
    assert [(p.partition, p.start, p.end) for p in orders.partitions] == [(0, 0, 10), (1, 0, 5)]
    assert orders.records == 15
    assert all(p.bytes is not None and p.bytes > 0 for p in orders.partitions)
    assert stream_bytes(orders) == sum(p.bytes or 0 for p in orders.partitions)
    assert infos["audit"].retention == Retention(max_age=3600)
    assert infos["orders"].retention.forever


def test_a_page_reads_a_partition_from_an_offset(streams: Streams) -> None:
    page = read_page(streams, "orders", 0, 3, limit=4)
    assert offsets(page.records) == [(0, 3), (0, 4), (0, 5), (0, 6)]
    assert [json.loads(r.value or b"") for r in page.records] == [{"n": 3}, {"n": 4}, {"n": 5},
                                                                 {"n": 6}]
    assert (page.next, page.start, page.end) == (7, 0, 10)
    last = read_page(streams, "orders", 0, 8, limit=4)
    assert (offsets(last.records), last.next) == ([(0, 8), (0, 9)], 10)
    at_end = read_page(streams, "orders", 1, 5)
    assert (at_end.records, at_end.next) == ((), 5)


def test_a_page_outside_the_stream_is_refused_naming_what_exists(streams: Streams) -> None:
    with pytest.raises(InvalidRequestError) as bad_offset:
        read_page(streams, "orders", 0, 11)
    assert str(bad_offset.value) == ("offset 11 is outside orders[0]: it keeps offsets 0 to 9 "
                                     "(the next record goes to 10); give an offset from 0 to 10")
    with pytest.raises(InvalidRequestError) as bad_partition:
        read_page(streams, "orders", 2, 0)
    assert str(bad_partition.value) == ("partition 2 does not exist: orders has partitions 0 "
                                        "to 1")
    with pytest.raises(InvalidRequestError) as empty:
        read_page(streams, "audit", 0, 1)
    assert str(empty.value) == ("offset 1 is outside audit[0], which holds no records (the "
                                "next goes to 0); give 0")


def test_the_offset_for_a_time_is_the_first_record_stamped_at_or_after_it(
        streams: Streams) -> None:
    assert offset_for_time(streams, "orders", 0, T0 + 3000) == 3
    assert offset_for_time(streams, "orders", 0, T0 + 3001) == 4
    assert offset_for_time(streams, "orders", 1, T0 + 3000) == 3  # stamped T0 + 3.5 s
    assert offset_for_time(streams, "orders", 0, T0 - 60_000) == 0
    assert offset_for_time(streams, "orders", 0, T0 + 60_000) == 10  # none after: the end
    with pytest.raises(InvalidRequestError, match="before 1970"):
        offset_for_time(streams, "orders", 0, -1)


def test_a_search_by_key_finds_exactly_the_records_with_that_key(streams: Streams) -> None:
    found = search_key(streams, "orders", b"k1")
    assert offsets(found.records) == [(0, 1), (0, 4), (0, 7)]
    assert (found.scanned, found.complete, found.why) == (15, True, "")
    binary = search_key(streams, "orders", b"\x00\xff")
    assert offsets(binary.records) == [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert search_key(streams, "orders", b"nobody").records == ()


def test_a_search_stops_at_its_bounds_and_says_where_to_go_on(streams: Streams) -> None:
    scan = search_key(streams, "orders", b"k1", max_scan=5)
    assert offsets(scan.records) == [(0, 1), (0, 4)]
    assert (scan.scanned, scan.resume) == (5, (0, 5))
    assert scan.why == "stopped after reading 5 records (at most 5 a search)"
    rest = search_key(streams, "orders", b"k1", start=scan.resume, max_scan=5)
    assert offsets(rest.records) == [(0, 7)]
    assert (rest.scanned, rest.resume) == (5, (1, 0))  # partition 0 done, 1 still to read
    last = search_key(streams, "orders", b"k1", start=rest.resume, max_scan=5)
    assert (last.records, last.scanned, last.resume) == ((), 5, None)

    few = search_key(streams, "orders", b"k0", max_results=2)
    assert offsets(few.records) == [(0, 0), (0, 3)]
    assert (few.resume, few.why) == ((0, 4), "stopped at 2 matches (at most 2 a search)")


def test_a_tail_opens_on_the_newest_records_then_returns_only_new_ones(
        streams: Streams) -> None:
    first = tail(streams, "orders", limit=3)
    assert offsets(first.records) == [(0, 7), (0, 8), (0, 9)]  # the newest by time
    assert (first.after, first.skipped) == ({0: 10, 1: 5}, 0)
    assert tail(streams, "orders", first.after).records == ()

    with streams.open_producer() as producer:
        producer.send("orders", b"late", key=b"x", partition=1, timestamp=T0 + 20_000)
        producer.send("orders", b"later", key=b"x", partition=1, timestamp=T0 + 21_000)
    new = tail(streams, "orders", first.after)
    assert offsets(new.records) == [(1, 5), (1, 6)]
    assert (new.after, new.skipped) == ({0: 10, 1: 7}, 0)

    with streams.open_producer() as producer:
        for i in range(5):
            producer.send("orders", b"burst", partition=0, timestamp=T0 + 30_000 + i)
    burst = tail(streams, "orders", new.after, limit=3)
    assert offsets(burst.records) == [(0, 12), (0, 13), (0, 14)]
    assert (burst.after, burst.skipped) == ({0: 15, 1: 7}, 2)
