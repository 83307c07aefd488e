"""Large records (10 KB values) on the embedded log: stored with raw values (issue 13 point 4),
read back exact at their offsets, and any damage reported with the batch's offsets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import millstream
from millstream import CorruptDataError, StreamPartition
from millstream.streams._local import batch
from tests.support.logread import by_partition, db_path, read_all

SIZE = 10 * 1024


def _value(partition: int, offset: int) -> bytes:
    """A distinct 10 KB value whose bytes name its place (``p0-big-000012-`` then filler)."""
    head = b"p%d-big-%06d-" % (partition, offset)
    return head + bytes((offset + i) % 251 for i in range(SIZE - len(head)))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"local:{tmp_path / 'log'}"


def test_ten_kilobyte_records_come_back_exact_at_their_offsets(url: str) -> None:
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("big", partitions=2)
        with streams.open_producer() as producer:
            for p in range(2):
                for k in range(3):  # 3 x 200 records of 10 KB: several stored rows each
                    values = [_value(p, k * 200 + i) for i in range(200)]
                    positions = producer.send_batch("big", values, partition=p).wait(30)
                    assert [x.offset for x in positions] == list(range(k * 200, k * 200 + 200))
            # single sends, a None value and headers among large ones
            h = producer.send("big", None, key=b"k", partition=0, headers=[("h", b"1")])
            last = producer.send("big", _value(0, 601), partition=0).wait(30)
            assert h.wait(30).offset == 600 and last.offset == 601
        records = by_partition(read_all(streams, "big"))
    assert [r.offset for r in records[1]] == list(range(600))
    assert [r.value for r in records[1]] == [_value(1, i) for i in range(600)]
    zero = records[0]
    assert [r.offset for r in zero] == list(range(602))
    assert [r.value for r in zero[:600]] == [_value(0, i) for i in range(600)]
    assert (zero[600].value, zero[600].key, zero[600].headers) == (None, b"k", (("h", b"1"),))
    assert zero[601].value == _value(0, 601) and zero[601].headers == ()
    assert all(type(r.value) is bytes for r in zero if r.value is not None)


def test_large_values_are_stored_in_the_raw_layout(url: str) -> None:
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("big")
        with streams.open_producer() as producer:
            producer.send_batch("big", [_value(0, i) for i in range(100)]).wait(30)
    conn = sqlite3.connect(db_path(url))
    try:
        firsts = [bytes(p[:1]) for (p,) in conn.execute("SELECT payload FROM batches")]
    finally:
        conn.close()
    assert firsts and set(firsts) == {bytes([batch.RAW_FORMAT])}


def test_a_flipped_byte_in_a_large_record_is_reported_with_its_batch_offsets(url: str) -> None:
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("rot")
        with streams.open_producer() as producer:
            for k in range(4):  # one send_batch of 40 x 10 KB is one stored row (< 512 KB)
                producer.send_batch("rot", [_value(0, k * 40 + i) for i in range(40)]).wait(30)
    path = db_path(url)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    conn.close()
    data = bytearray(path.read_bytes())
    needle = b"p0-big-000090-"
    assert data.count(needle) == 1
    data[data.index(needle) + 5000] ^= 0x10  # inside the value, far from its head
    path.write_bytes(bytes(data))

    with millstream.open_streams(url) as streams, streams.open_consumer() as consumer:
        consumer.subscribe(["rot"])
        read: list[millstream.Record] = []
        with pytest.raises(CorruptDataError, match=r"'rot' partition 0.*80\.\.119.*CRC"):
            for _ in range(20):
                read.extend(consumer.poll(max_records=30, timeout=0))
        assert [r.offset for r in read] == list(range(80))
        assert [r.value for r in read] == [_value(0, i) for i in range(80)]
        assert consumer.position(StreamPartition("rot", 0)) == 80
