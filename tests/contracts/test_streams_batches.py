"""Streams contract: the batch calls — ``Consumer.poll_batch`` (records made only when
touched) and ``Producer.write`` (no handle; acknowledged by the next ``flush``)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import millstream
from millstream import Position, Record, RecordBatch, StreamPartition
from millstream.errors import (
    ClosedError,
    DeliveryError,
    InvalidRequestError,
    RecordTooLargeError,
    UnknownStreamError,
)
from millstream.streams._partitioner import partition_for_key
from tests.contracts.test_streams_basic import read_all
from tests.support.backends import BackendUnderTest
from tests.support.waiting import wait_until

MiB = 1024 * 1024


def assert_columns_match(batch: RecordBatch) -> list[Record]:
    """Every column call of ``batch`` agrees with its records, however they are reached."""
    records = list(batch)
    assert len(batch) == len(records) and bool(batch) == bool(records)
    assert [batch[i] for i in range(len(batch))] == records
    if records:
        assert batch[-1] == records[-1]
    with pytest.raises(IndexError):
        batch[len(records)]
    assert batch.values() == [r.value for r in records]
    assert batch.keys() == [r.key for r in records]
    assert batch.headers() == [r.headers for r in records]
    assert batch.timestamps() == [r.timestamp for r in records]
    assert batch.streams() == [r.stream for r in records]
    assert batch.partitions() == [r.partition for r in records]
    assert batch.offsets() == [r.offset for r in records]
    assert batch.positions() == [r.position for r in records]
    assert all(type(r) is Record for r in records)
    return records


def last_offsets(records: list[Record]) -> dict[StreamPartition, int]:
    return {StreamPartition(r.stream, r.partition): r.offset + 1 for r in records}


def test_poll_batch_returns_every_field_and_ends_past_each_partitions_last_record(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    headers = (("content-type", b"application/json"), ("trace", None), ("trace", b"2"))
    sent = []
    with backend.open().open_producer() as producer:
        for i in range(300):
            key = f"k{i % 7}".encode()
            value = None if i % 50 == 49 else f"v{i}".encode()
            h = headers if i % 3 == 0 else ()
            producer.send(stream, value, key=key, headers=h, timestamp=1_700_000_000_000 + i)
            sent.append((key, value, h, 1_700_000_000_000 + i))
        producer.flush(30)
    got: list[Record] = []
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 30
        while len(got) < 300 and time.monotonic() < deadline:
            batch = consumer.poll_batch(40, timeout=0.5)
            assert len(batch) <= 40
            records = assert_columns_match(batch)
            # ends: past the last record of each partition in the batch, and the position
            assert batch.ends() == last_offsets(records)
            for sp, end in batch.ends().items():
                assert consumer.position(sp) == end
            got.extend(records)
        assert not consumer.poll_batch(100, timeout=0.2)  # nothing more may come
    assert len(got) == 300
    by_value = {(r.key, r.value, r.headers, r.timestamp) for r in got}
    assert by_value == set(sent)
    for part in range(3):
        offsets = [r.offset for r in got if r.partition == part]
        assert offsets == list(range(len(offsets)))  # dense, in order, none twice
    for r in got:
        assert r.partition == partition_for_key(r.key or b"", 3)
    # the same records as poll returns
    assert sorted(got) == sorted(read_all(backend, stream, 300))


def test_a_batch_over_two_streams_ends_each_partition_of_each_stream(
        backend: BackendUnderTest) -> None:
    first, second = backend.new_stream(partitions=2), backend.new_stream(partitions=1)
    with backend.open().open_producer() as producer:
        producer.send_batch(first, [b"a"] * 30, partition=0)
        producer.send_batch(first, [b"b"] * 20, partition=1)
        producer.send_batch(second, [b"c"] * 10, partition=0)
    got: list[Record] = []
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([first, second])
        deadline = time.monotonic() + 30
        while len(got) < 60 and time.monotonic() < deadline:
            batch = consumer.poll_batch(1000, timeout=0.5)
            records = assert_columns_match(batch)
            assert batch.ends() == last_offsets(records)
            got.extend(records)
        assert {sp: consumer.position(sp) for sp in consumer.assignment()} == {
            StreamPartition(first, 0): 30, StreamPartition(first, 1): 20,
            StreamPartition(second, 0): 10}
    assert Counter((r.stream, r.partition, r.value) for r in got) == {
        (first, 0, b"a"): 30, (first, 1, b"b"): 20, (second, 0, b"c"): 10}


def test_an_empty_poll_batch_is_empty_in_every_column(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        started = time.monotonic()
        batch = consumer.poll_batch(10, timeout=0.3)
        assert time.monotonic() - started >= 0.25  # it waited for records
        assert len(batch) == 0 and not batch and list(batch) == []
        assert batch.values() == batch.keys() == batch.headers() == batch.offsets() == []
        assert batch.ends() == {}
        with pytest.raises(IndexError):
            batch[0]


def test_poll_and_poll_batch_interleave_without_a_gap_or_a_repeat(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=1)
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"{i}".encode() for i in range(500)])
    offsets: list[int] = []
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 30
        turn = 0
        while len(offsets) < 500 and time.monotonic() < deadline:
            if turn % 2:
                offsets.extend(r.offset for r in consumer.poll(37, timeout=0.5))
            else:
                offsets.extend(consumer.poll_batch(23, timeout=0.5).offsets())
            turn += 1
    assert offsets == list(range(500))


def test_committing_a_batchs_ends_resumes_the_group_after_it(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=1)
    sp = StreamPartition(stream, 0)
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"{i}".encode() for i in range(100)])
    group = backend.new_group()
    streams = backend.open()
    with streams.open_consumer(group) as a:
        a.subscribe([stream])
        first = a.poll_batch(30, timeout=10)
        assert first.offsets() == list(range(30))
        assert first.ends() == {sp: 30}
        a.poll_batch(30, timeout=10)  # read on, but only the first batch is committed
        a.commit(first.ends())
        assert a.committed([sp]) == {sp: 30}
    with streams.open_consumer(group) as b:
        b.subscribe([stream])
        assert b.poll_batch(5, timeout=10).offsets() == [30, 31, 32, 33, 34]


def test_a_rebalance_during_batches_moves_partitions_at_the_committed_ends(
        backend: BackendUnderTest) -> None:
    """A member commits the ends of the batches it has processed when its partitions are
    revoked (inside poll_batch); the next owner resumes exactly there: every record is
    processed once, and a batch holds only partitions its consumer owns."""
    stream = backend.new_stream(partitions=2)
    n = 1000
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"{i}".encode() for i in range(n)],
                            keys=[f"{i}".encode() for i in range(n)])
    group = backend.new_group()
    streams = backend.open()
    processed: list[Record] = []
    done: dict[StreamPartition, int] = {}  # the ends of a's processed batches
    a = streams.open_consumer(group)

    def commit_processed(parts: list[StreamPartition]) -> None:
        a.commit({p: done[p] for p in parts if p in done})

    def process(consumer: millstream.Consumer, batch: RecordBatch) -> None:
        assert set(batch.partitions()) <= {sp.partition for sp in consumer.assignment()}
        processed.extend(batch)
        if consumer is a:
            done.update(batch.ends())

    a.subscribe([stream], on_revoke=commit_processed)

    def a_owns_both_and_has_read_both() -> bool:
        process(a, a.poll_batch(10, timeout=0.05))
        return len(a.assignment()) == 2 and len(done) == 2

    wait_until(a_owns_both_and_has_read_both, backend.rebalance_s, "a to read both partitions")
    with streams.open_consumer(group) as b:
        b.subscribe([stream])
        deadline = time.monotonic() + backend.rebalance_s + 30
        while len(processed) < n:
            assert time.monotonic() < deadline, f"only {len(processed)} of {n} processed"
            process(a, a.poll_batch(10, timeout=0.05))
            process(b, b.poll_batch(10, timeout=0.05))
        assert b.assignment(), "the second member never got a partition"
        for _ in range(5):  # nothing more may come
            process(a, a.poll_batch(10, timeout=0.05))
            process(b, b.poll_batch(10, timeout=0.05))
    a.close()
    assert Counter(r.position for r in processed).most_common(1)[0][1] == 1
    assert sorted(int(r.value or b"") for r in processed) == list(range(n))


def test_write_stores_records_in_the_order_written_with_every_field(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=4)
    headers = (("h", b"1"), ("h", None))
    shared = (("content-type", b"application/json"), ("schema", b"Order"))
    keys = [f"user-{i % 10}".encode() for i in range(2000)]

    def headers_of(i: int) -> tuple[tuple[str, bytes | None], ...]:
        # none, one tuple shared by many records (as a service's outputs), or each its own
        return () if i % 3 == 0 else shared if i % 3 == 1 else (("n", f"{i}".encode()),)

    with backend.open().open_producer() as producer:
        for i, key in enumerate(keys):
            assert producer.write(stream, f"{i}".encode(), key=key, headers=headers_of(i)) \
                is None
        producer.write(stream, b"explicit", partition=2, headers=headers,
                       timestamp=1_700_000_000_042)
        producer.write(stream, None, key=b"gone")
        producer.flush(60)
    records = read_all(backend, stream, 2002)
    assert len(records) == 2002
    for part in range(4):
        offsets = [r.offset for r in records if r.partition == part]
        assert offsets == list(range(len(offsets)))
    keyed = [r for r in records if r.key is not None and r.key.startswith(b"user-")]
    assert sorted(int(r.value or b"") for r in keyed) == list(range(2000))
    for r in keyed:
        assert r.partition == partition_for_key(r.key or b"", 4)
        assert r.headers == headers_of(int(r.value or b""))
    for part in range(4):  # within a partition, in the order written
        values = [int(r.value or b"") for r in keyed if r.partition == part]
        assert values == sorted(values)
    (explicit,) = [r for r in records if r.value == b"explicit"]
    assert (explicit.partition, explicit.headers, explicit.timestamp) == (
        2, headers, 1_700_000_000_042)
    (tombstone,) = [r for r in records if r.key == b"gone"]
    assert tombstone.value is None and tombstone.partition == partition_for_key(b"gone", 4)


def test_write_send_and_send_batch_to_one_partition_keep_the_order_called(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    expected: list[bytes] = []
    with backend.open().open_producer() as producer:
        for i in range(600):
            value = f"{i}".encode()
            expected.append(value)
            if i % 3 == 0:
                producer.write(stream, value, partition=1)
            elif i % 3 == 1:
                producer.send(stream, value, partition=1)
            else:
                producer.send_batch(stream, [value], partition=1)
        producer.flush(60)
    records = read_all(backend, stream, 600)
    assert [r.value for r in records] == expected
    assert [r.offset for r in records] == list(range(600))
    assert {r.partition for r in records} == {1}


def test_write_checks_its_arguments_at_the_call_and_appends_nothing_refused(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    streams = backend.open()
    producer = streams.open_producer()
    with pytest.raises(RecordTooLargeError):
        producer.write(stream, b"x" * (MiB + 1))
    producer.write(stream, b"ok")  # the stream is known now: the check holds on the fast path
    with pytest.raises(RecordTooLargeError):
        producer.write(stream, b"x" * (MiB - 10), key=b"k" * 20)
    with pytest.raises(RecordTooLargeError):
        producer.write(stream, b"x" * MiB, headers=(("h", b"y"),))
    with pytest.raises(UnknownStreamError, match="no-such-stream"):
        producer.write("no-such-stream", b"x")
    with pytest.raises(InvalidRequestError, match="partition 2"):
        producer.write(stream, b"x", partition=2)
    producer.flush(30)
    producer.close()
    with pytest.raises(ClosedError):
        producer.write(stream, b"late")
    info = streams.admin().describe_stream(stream)
    assert info.records == 1


@pytest.mark.parametrize("call", ["write", "write_batch"])
def test_flush_raises_for_writes_that_failed_and_acknowledges_only_what_was_stored(
        backend: BackendUnderTest, call: str) -> None:
    good = backend.new_stream(partitions=1)
    streams = backend.open()
    with streams.open_producer() as producer:
        refusing, refused = backend.refusing_stream(producer)
        producer.write(good, b"g0")
        if call == "write":
            producer.write(refusing, refused)
            producer.write(good, b"g1")
            producer.write(refusing, refused)
        else:
            producer.write_batch(refusing, [refused, refused])
            producer.write_batch(good, [b"g1"])
        producer.write(good, b"g2")
        with pytest.raises(DeliveryError, match=r"^2 records") as failed:
            producer.flush(60)
        assert failed.value.undelivered == 2
        producer.flush(30)  # each failure is reported once
        producer.write(good, b"g3")
        producer.flush(30)
    records = read_all(backend, good, 4)
    assert [(r.offset, r.value) for r in records] == [
        (0, b"g0"), (1, b"g1"), (2, b"g2"), (3, b"g3")]
    assert Position(good, 0, 3) == records[-1].position


def test_a_flush_raises_for_a_refused_write_of_its_thread_even_after_another_threads_flush(
        backend: BackendUnderTest) -> None:
    good = backend.new_stream(partitions=1)
    streams = backend.open()
    with streams.open_producer() as producer:
        refusing, refused = backend.refusing_stream(producer)
        outcome: dict[str, str] = {}

        def flush_in(name: str) -> None:
            try:
                producer.flush(60)
                outcome[name] = "returned"
            except DeliveryError as exc:
                outcome[name] = f"raised {exc.undelivered}"

        producer.write(refusing, refused)  # thread A's record, never stored
        other = threading.Thread(target=lambda: (producer.write(good, b"b0"),
                                                 flush_in("thread B")))
        other.start()
        other.join()
        flush_in("thread A")  # A's flush: "every record sent before the call" includes its own
        assert outcome["thread A"] == "raised 1", outcome
    assert [r.value for r in read_all(backend, good, 1)] == [b"b0"]


def test_write_stores_each_records_own_headers_when_the_caller_reuses_one_list(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=1)
    headers: list[tuple[str, bytes | None]] = [("trace", b"0")]
    with backend.open().open_producer() as producer:
        for i in range(5):
            headers[0] = ("trace", str(i).encode())  # one list, changed before each write
            producer.write(stream, f"v{i}".encode(), headers=headers)  # type: ignore[arg-type]
        producer.flush(30)
    assert [(r.value, r.headers) for r in read_all(backend, stream, 5)] == [
        (f"v{i}".encode(), (("trace", str(i).encode()),)) for i in range(5)]


def test_batches_read_across_seeks_on_two_partitions_hold_each_offset_once_from_the_seek(
        backend: BackendUnderTest) -> None:
    """After seeks back on one partition and forward on another, the next batches start
    exactly at the seeks (nothing fetched before them leaks in), their ends are the positions,
    and a batch read before the seeks still holds its own records after later polls."""
    stream = backend.new_stream(partitions=2)
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"a{i}".encode() for i in range(200)], partition=0)
        producer.send_batch(stream, [f"b{i}".encode() for i in range(200)], partition=1)
    p0, p1 = StreamPartition(stream, 0), StreamPartition(stream, 1)
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        early = consumer.poll_batch(50, timeout=10)
        early_records = list(early)
        wait_until(lambda: consumer.poll_batch(50, timeout=0.2).offsets() and
                   consumer.position(p0) > 20 and consumer.position(p1) > 20,
                   30, "both partitions read past 20")
        consumer.seek(p0, 7)
        consumer.seek(p1, 150)
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < 193 + 50 and time.monotonic() < deadline:
            batch = consumer.poll_batch(30, timeout=0.5)
            records = assert_columns_match(batch)
            assert batch.ends() == last_offsets(records)
            for sp, end in batch.ends().items():
                assert consumer.position(sp) == end
            got.extend(records)
        assert not consumer.poll_batch(100, timeout=0.3)
    assert [r.offset for r in got if r.partition == 0] == list(range(7, 200))
    assert [r.offset for r in got if r.partition == 1] == list(range(150, 200))
    assert [r.value for r in got if r.partition == 1] == [f"b{i}".encode()
                                                         for i in range(150, 200)]
    assert list(early) == early_records  # the early batch is intact after later polls
    assert early.values() == [r.value for r in early_records]


def test_write_batch_stores_every_record_in_the_order_given(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    shared = (("content-type", b"application/json"),)
    n = 1200
    keys = [f"k{i % 13}".encode() for i in range(n)]
    headers = [shared if i % 2 else (("n", f"{i}".encode()),) for i in range(n)]
    with backend.open().open_producer() as producer:
        for lo in range(0, n, 500):
            values = [f"{i}".encode() for i in range(lo, min(lo + 500, n))]
            assert producer.write_batch(stream, values, keys=keys[lo:lo + 500],
                                        headers=headers[lo:lo + 500]) is None
        producer.write_batch(stream, [b"a", None, b"c"], partition=1)
        producer.flush(60)
    records = read_all(backend, stream, n + 3)
    assert len(records) == n + 3
    keyed = [r for r in records if r.key is not None]
    for r in keyed:
        i = int(r.value or b"")
        assert (r.key, r.headers, r.partition) == (keys[i], headers[i],
                                                   partition_for_key(keys[i], 3))
    for part in range(3):
        values = [int(r.value or b"") for r in keyed if r.partition == part]
        assert values == sorted(values)
        offsets = [r.offset for r in records if r.partition == part]
        assert offsets == list(range(len(offsets)))
    assert sorted(int(r.value or b"") for r in keyed) == list(range(n))
    assert [(r.partition, r.value) for r in records if r.key is None] == [
        (1, b"a"), (1, None), (1, b"c")]


def test_write_batch_refuses_the_whole_batch_at_the_call_if_one_record_is_invalid(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    streams = backend.open()
    producer = streams.open_producer()
    with pytest.raises(RecordTooLargeError):
        producer.write_batch(stream, [b"ok", b"x" * (MiB + 1), b"ok"])
    with pytest.raises(RecordTooLargeError):
        producer.write_batch(stream, [b"ok", b"x" * (MiB - 5)], keys=[b"k", b"k" * 10])
    with pytest.raises(InvalidRequestError, match="2 values but 1 keys"):
        producer.write_batch(stream, [b"a", b"b"], keys=[b"k"])
    with pytest.raises(UnknownStreamError, match="no-such-stream"):
        producer.write_batch("no-such-stream", [b"x"])
    with pytest.raises(InvalidRequestError, match="partition 5"):
        producer.write_batch(stream, [b"x"], partition=5)
    producer.flush(30)
    producer.close()
    with pytest.raises(ClosedError):
        producer.write_batch(stream, [b"late"])
    assert streams.admin().describe_stream(stream).records == 0
