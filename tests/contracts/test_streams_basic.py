"""Streams contract: producing, reading, seeking and administering, through the Protocols only."""

from __future__ import annotations

import time
import uuid

import pytest

import millstream
from millstream import Record, StreamPartition
from millstream.streams._partitioner import partition_for_key
from tests.support.backends import BackendUnderTest

MiB = 1024 * 1024


def read_all(backend: BackendUnderTest, stream: str, expected: int,
             timeout: float = 20.0) -> list[Record]:
    """Every record of ``stream`` from the beginning, with a standalone consumer."""
    out: list[Record] = []
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(consumer.poll(1000, timeout=0.5))
        out.extend(consumer.poll(1000, timeout=0.2))  # nothing more may come
    return out


def test_a_record_comes_back_with_every_field(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    headers = (("content-type", b"application/json"), ("trace", None), ("trace", b"2"))
    with backend.open().open_producer() as producer:
        pos = producer.send(stream, b'{"a": 1}', key=b"alpha", headers=headers,
                            timestamp=1_700_000_000_123).wait(30)
        tomb = producer.send(stream, None, key=b"alpha").wait(30)
        empty = producer.send(stream, b"", key=b"alpha").wait(30)
    expected_partition = partition_for_key(b"alpha", 3)
    assert pos == (stream, expected_partition, 0)
    assert (tomb.offset, empty.offset) == (1, 2)
    records = read_all(backend, stream, 3)
    assert [r.offset for r in records] == [0, 1, 2]
    first, tombstone, blank = records
    assert first.stream == stream and first.partition == expected_partition
    assert first.key == b"alpha" and first.value == b'{"a": 1}'
    assert first.timestamp == 1_700_000_000_123
    assert first.headers == headers
    assert first.position == pos
    assert tombstone.value is None and blank.value == b""
    assert tombstone.headers == () and blank.headers == ()


def test_offsets_are_dense_and_order_is_kept_per_partition(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=4)
    keys = [f"user-{i % 10}".encode() for i in range(2000)]
    with backend.open().open_producer() as producer:
        handles = [producer.send(stream, f"{i}".encode(), key=k) for i, k in enumerate(keys)]
        producer.flush(60)
        assert all(h.done() for h in handles)
        positions = [h.wait(0) for h in handles]
    by_partition: dict[int, list[int]] = {}
    for p in positions:
        by_partition.setdefault(p.partition, []).append(p.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    for i, key in enumerate(keys):
        assert positions[i].partition == partition_for_key(key, 4)
    records = read_all(backend, stream, 2000)
    assert len(records) == 2000
    for part, offsets in by_partition.items():
        values = [int(r.value or b"") for r in records if r.partition == part]
        assert values == [i for i, p in enumerate(positions) if p.partition == part]
        assert [r.offset for r in records if r.partition == part] == offsets


def test_send_batch_returns_positions_in_order(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    values = [f"v{i}".encode() for i in range(1500)]
    with backend.open().open_producer() as producer:
        first = producer.send_batch(stream, values, partition=1).wait(60)
        keyed = producer.send_batch(stream, values[:10], keys=[b"k"] * 10,
                                    headers=[(("h", b"x"),)] * 10).wait(60)
    assert [p.offset for p in first] == list(range(1500))
    assert {p.partition for p in first} == {1}
    kp = partition_for_key(b"k", 2)
    start = 1500 if kp == 1 else 0
    assert [(p.partition, p.offset) for p in keyed] == [(kp, start + i) for i in range(10)]
    records = read_all(backend, stream, 1510)
    assert [r.value for r in records if r.partition == 1][:1500] == values
    assert [r.headers for r in records if r.key == b"k"] == [(("h", b"x"),)] * 10


def test_keyed_send_batch_over_partitions_keeps_order_and_positions(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=4)
    keys = [f"user-{i % 37}".encode() for i in range(600)]
    values = [f"{i}".encode() for i in range(600)]
    shared = (("content-type", b"text/plain"),)
    headers = [shared if i % 2 else (("n", f"{i}".encode()),) for i in range(600)]
    with backend.open().open_producer() as producer:
        positions = producer.send_batch(stream, values, keys=keys, headers=headers).wait(60)
    assert len(positions) == 600
    for i, key in enumerate(keys):  # positions come back in the order sent
        assert positions[i].partition == partition_for_key(key, 4)
    for part in range(4):
        offsets = [p.offset for p in positions if p.partition == part]
        assert offsets == list(range(len(offsets)))  # dense, in the order sent
    records = read_all(backend, stream, 600)
    by_position = {(r.partition, r.offset): r for r in records}
    for i, p in enumerate(positions):
        r = by_position[(p.partition, p.offset)]
        assert (r.key, r.value, r.headers) == (keys[i], values[i], headers[i])


def test_send_batch_rejects_mismatched_columns(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    with backend.open().open_producer() as producer, \
            pytest.raises(millstream.InvalidRequestError, match="3 values but 2 keys"):
        producer.send_batch(stream, [b"a", b"b", b"c"], keys=[b"1", b"2"])


def test_oversized_records_are_refused_and_nothing_is_appended(
        backend: BackendUnderTest) -> None:
    """The boundary, exactly: key + value + headers of 1 MiB is stored (on Kafka too, whose
    broker runs with its default limit: the stream millstream created takes it), 1 MiB + 1
    byte is refused at the call, by ``send`` and by ``send_batch``, and nothing of it is
    appended."""
    stream = backend.new_stream()
    limit = MiB
    headers = (("name", b"12345"),)
    with backend.open().open_producer() as producer:
        whole = producer.send(stream, b"v" * limit).wait(60)
        mixed = producer.send(stream, b"x" * (limit - 3 - 9), key=b"abc",
                              headers=headers).wait(60)
        with pytest.raises(millstream.RecordTooLargeError) as info:
            producer.send(stream, b"x" * (limit - 2), key=b"abc")
        assert info.value.size == limit + 1 and info.value.limit == limit
        assert str(limit + 1) in str(info.value) and str(limit) in str(info.value)
        with pytest.raises(millstream.RecordTooLargeError) as info:
            producer.send(stream, b"x" * (limit - 3 - 8), key=b"abc", headers=headers)
        assert info.value.size == limit + 1
        with pytest.raises(millstream.RecordTooLargeError) as info:
            producer.send_batch(stream, [b"ok", b"x" * (limit + 1)])
        assert info.value.size == limit + 1
        producer.flush(30)
    assert (whole.offset, mixed.offset) == (0, 1)
    assert backend.open().admin().describe_stream(stream).partitions[0].end == 2
    records = read_all(backend, stream, 2)
    assert [(r.offset, len(r.value or b""), r.key, r.headers) for r in records] == [
        (0, limit, None, ()), (1, limit - 12, b"abc", headers)]


def test_unknown_streams_and_bad_names_are_named_in_the_error(
        backend: BackendUnderTest) -> None:
    streams = backend.open()
    with streams.open_producer() as producer:
        with pytest.raises(millstream.UnknownStreamError, match="no-such-stream"):
            producer.send("no-such-stream", b"x")
        with pytest.raises(millstream.InvalidRequestError, match="'bad name!'"):
            producer.send("bad name!", b"x")
    with streams.open_consumer("g") as consumer, \
            pytest.raises(millstream.UnknownStreamError, match="missing-stream"):
        consumer.subscribe(["missing-stream"])
    admin = streams.admin()
    for bad in ["", ".", "..", "a/b", "ünï", "x" * 250]:
        with pytest.raises(millstream.InvalidRequestError):
            admin.create_stream(bad)
    longest = f"longest-{uuid.uuid4().hex}".ljust(249, "y")
    assert admin.create_stream(longest).name == longest
    with pytest.raises(millstream.UnknownStreamError):
        admin.describe_stream("never-made")
    with pytest.raises(millstream.UnknownStreamError):
        admin.delete_stream("never-made")


def test_admin_lifecycle(backend: BackendUnderTest) -> None:
    admin = backend.open().admin()
    name = backend.new_stream(partitions=3, retention=millstream.Retention(max_age=3600))
    info = admin.describe_stream(name)
    assert info.partition_count == 3
    assert [(p.start, p.end) for p in info.partitions] == [(0, 0)] * 3
    assert info.retention.max_age == 3600
    assert name in admin.list_streams()
    with pytest.raises(millstream.AlreadyExistsError, match=name):
        admin.create_stream(name, 3)
    assert admin.ensure_stream(name, 3).partition_count == 3
    with pytest.raises(millstream.InvalidRequestError, match="partitions=0"):
        admin.create_stream(name + "-x", 0)
    with pytest.raises(millstream.InvalidRequestError, match="max_bytes=-5"):
        millstream.Retention(max_bytes=-5)
    admin.delete_stream(name)
    assert name not in admin.list_streams()
    with backend.open().open_producer() as producer, \
            pytest.raises(millstream.UnknownStreamError):
        producer.send(name, b"gone")


def test_partition_argument_is_checked(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    with backend.open().open_producer() as producer:
        assert producer.send(stream, b"a", partition=1).wait(30).partition == 1
        with pytest.raises(millstream.InvalidRequestError, match="partition 2"):
            producer.send(stream, b"b", partition=2)
        with pytest.raises(millstream.InvalidRequestError, match="partition -1"):
            producer.send(stream, b"b", partition=-1)


def _fill(backend: BackendUnderTest, stream: str, n: int, partition: int = 0,
          timestamps: list[int] | None = None) -> None:
    with backend.open().open_producer() as producer:
        for i in range(n):
            producer.send(stream, f"{i}".encode(), partition=partition,
                          timestamp=timestamps[i] if timestamps else None)
        producer.flush(60)


def test_seek_to_beginning_end_offset_and_time(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    base = 1_700_000_000_000
    _fill(backend, stream, 100, timestamps=[base + 10 * i for i in range(100)])
    sp = StreamPartition(stream, 0)
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        assert consumer.assignment() == [sp]
        consumer.seek(sp, 42)
        assert consumer.position(sp) == 42
        assert [r.offset for r in consumer.poll(3, timeout=5)] == [42, 43, 44]
        consumer.seek_to_timestamp(base + 555)  # first record at or after: offset 56
        assert consumer.poll(1, timeout=5)[0].offset == 56
        consumer.seek_to_timestamp(base + 10 * 100)  # after the last record: the end
        assert consumer.position(sp) == 100
        consumer.seek_to_beginning()
        assert consumer.poll(1, timeout=5)[0].offset == 0
        consumer.seek_to_end()
        assert consumer.position(sp) == 100
        assert consumer.poll(10, timeout=0.3) == []
        consumer.seek(sp, 100)  # the end itself is a valid position
        with pytest.raises(millstream.OffsetOutOfRangeError, match="101"):
            consumer.seek(sp, 101)
        with pytest.raises(millstream.InvalidRequestError, match="-1"):
            consumer.seek(sp, -1)
        with pytest.raises(millstream.InvalidRequestError, match="not assigned"):
            consumer.seek(StreamPartition(stream, 5), 0)


def test_commit_committed_lag_and_resume(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    _fill(backend, stream, 30, partition=0)
    _fill(backend, stream, 20, partition=1)
    group = backend.new_group()
    p0, p1 = StreamPartition(stream, 0), StreamPartition(stream, 1)
    with backend.open().open_consumer(group) as consumer:
        consumer.subscribe([stream])
        assert consumer.committed([p0, p1]) == {p0: None, p1: None}
        got: list[Record] = []
        while len(got) < 50:
            got.extend(consumer.poll(100, timeout=5))
        assert consumer.lag() == {p0: 0, p1: 0}
        consumer.commit({p0: 10, p1: 20})
        assert consumer.committed([p0, p1]) == {p0: 10, p1: 20}
        consumer.seek(p0, 5)
        assert consumer.lag()[p0] == 25
        with pytest.raises(millstream.InvalidRequestError, match="-3"):
            consumer.commit({p0: -3})
    with backend.open().open_consumer(group) as again:
        again.subscribe([stream])
        records = []
        while len(records) < 20:
            records.extend(again.poll(100, timeout=5))
        assert sorted((r.partition, r.offset) for r in records) == [(0, i) for i in range(10, 30)]
        again.commit()
        assert again.committed() == {p0: 30, p1: 20}
    group_info = backend.open().admin().describe_group(group)
    assert {(p.stream, p.partition, p.committed, p.end, p.lag) for p in group_info.partitions} \
        == {(stream, 0, 30, 30, 0), (stream, 1, 20, 20, 0)}
    assert group in backend.open().admin().list_groups()


def test_offset_reset_latest_skips_what_came_before(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    _fill(backend, stream, 5)
    with backend.open().open_consumer(backend.new_group(), offset_reset="latest") as consumer:
        consumer.subscribe([stream])
        assert consumer.poll(10, timeout=0.5) == []
        with backend.open().open_producer() as producer:
            producer.send(stream, b"new").wait(30)
        records = consumer.poll(10, timeout=10)
        assert [(r.offset, r.value) for r in records] == [(5, b"new")]


def test_standalone_consumer_cannot_commit(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        assert consumer.group is None
        with pytest.raises(millstream.InvalidRequestError, match="group"):
            consumer.commit()


def test_closed_objects_refuse_use(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    streams = backend.open()
    producer = streams.open_producer()
    producer.close()
    producer.close()  # idempotent
    with pytest.raises(millstream.ClosedError):
        producer.send(stream, b"x")
    consumer = streams.open_consumer("g")
    consumer.subscribe([stream])
    consumer.close()
    consumer.close()
    with pytest.raises(millstream.ClosedError):
        consumer.poll()


def test_poll_arguments_are_checked(backend: BackendUnderTest) -> None:
    stream = backend.new_stream()
    with backend.open().open_consumer() as consumer:
        with pytest.raises(millstream.InvalidRequestError, match="subscribe"):
            consumer.poll()
        consumer.subscribe([stream])
        with pytest.raises(millstream.InvalidRequestError, match="max_records=0"):
            consumer.poll(0)


def test_consumers_started_after_producers_stopped_read_everything(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"{i}".encode() for i in range(3000)],
                            keys=[f"{i}".encode() for i in range(3000)])
    records = read_all(backend, stream, 3000)
    assert sorted(int(r.value or b"") for r in records) == list(range(3000))


def test_independent_groups_each_read_everything(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    _fill(backend, stream, 40, partition=0)
    _fill(backend, stream, 40, partition=1)
    for group in (backend.new_group(), backend.new_group()):
        with backend.open().open_consumer(group) as consumer:
            consumer.subscribe([stream])
            got: list[Record] = []
            deadline = time.monotonic() + 20
            while len(got) < 80 and time.monotonic() < deadline:
                got.extend(consumer.poll(100, timeout=1))
            consumer.commit()
            assert len(got) == 80
            assert consumer.committed() == {StreamPartition(stream, 0): 40,
                                             StreamPartition(stream, 1): 40}


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_small_polls_return_every_record_once_in_order(
        backend: BackendUnderTest, batch_size: int) -> None:
    stream = backend.new_stream()
    with backend.open().open_producer() as producer:
        for start in range(0, 21, batch_size):
            producer.send_batch(stream, [f"{i}".encode()
                                         for i in range(start, min(start + batch_size, 21))])
            producer.flush(30)
    got: list[Record] = []
    with backend.open().open_consumer(backend.new_group()) as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 20
        while len(got) < 21 and time.monotonic() < deadline:
            batch = consumer.poll(2, timeout=1)
            assert len(batch) <= 2
            got.extend(batch)
            consumer.commit()
            assert consumer.committed()[StreamPartition(stream, 0)] == got[-1].offset + 1
    assert [r.offset for r in got] == list(range(21))
    assert [r.value for r in got] == [f"{i}".encode() for i in range(21)]
