"""Large records (10 KB values) on the embedded log (issue 13 point 4): stored once, in a
segment file fsynced before its row commits (``streams._local._segments``), read back exact at
their offsets; damage, a missing file, a crash between the file write and the commit,
retention, compaction and stream deletion all keep the log's promises."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import millstream
from millstream import CorruptDataError, Retention, StreamPartition
from millstream.faults import FAULT_EXIT_CODE
from tests.support.children import REPO
from tests.support.logread import by_partition, db_path, integrity, read_all
from tests.support.waiting import wait_until

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


def _segment_files(url: str) -> list[Path]:
    db = db_path(url)
    return sorted(db.parent.glob(f"{db.name}-segment-*"))


def _rows(url: str) -> list[tuple[int, int, int | None, int]]:
    """(base offset, count, segment, length of the payload column) of every batch row."""
    conn = sqlite3.connect(db_path(url))
    try:
        return conn.execute(
            "SELECT base_offset, count, segment, length(payload) FROM batches "
            "ORDER BY stream_id, partition, base_offset").fetchall()
    finally:
        conn.close()


def _produce(url: str, stream: str, batches: int, per_batch: int = 40,
             retention: Retention | None = None, options: str = "") -> None:
    with millstream.open_streams(url + options) as streams:
        if stream not in streams.admin().list_streams():
            streams.admin().create_stream(stream, retention=retention)
        with streams.open_producer() as producer:
            start = sum(p.end for p in streams.admin().describe_stream(stream).partitions)
            for k in range(batches):  # 40 x 10 KB: one stored row per send_batch
                first = start + k * per_batch
                positions = producer.send_batch(
                    stream, [_value(0, first + i) for i in range(per_batch)]).wait(30)
                assert positions[0].offset == first


def test_a_poll_of_large_records_stops_near_eight_megabytes_and_the_next_goes_on(
        url: str) -> None:
    _produce(url, "big", batches=50)  # 2,000 records of 10 KB, 40 to a stored batch
    with millstream.open_streams(url) as streams:
        with streams.open_producer() as producer:
            streams.admin().create_stream("small")
            producer.send_batch("small", [b"s" * 100] * 30_000).wait(30)
        with streams.open_consumer() as consumer:
            consumer.subscribe(["big"])
            sizes = []
            offsets: list[int] = []
            while len(offsets) < 2000:
                got = consumer.poll(max_records=10_000, timeout=1)
                sizes.append(len(got))
                offsets.extend(r.offset for r in got)
        # a stored batch holds ~410 KB: the 21st brings a read past 8 MiB
        assert sizes == [840, 840, 320]
        assert offsets == list(range(2000))
        with streams.open_consumer() as consumer:  # small records: max_records still rules
            consumer.subscribe(["small"])
            assert len(consumer.poll(max_records=10_000, timeout=1)) == 10_000


def test_large_batches_are_written_once_to_a_segment_file_and_rows_point_at_them(
        url: str) -> None:
    _produce(url, "big", batches=5)
    rows = _rows(url)
    assert [(b, c, s, n) for b, c, s, n in rows] == [(k * 40, 40, 1, 16) for k in range(5)]
    [segment] = _segment_files(url)
    data = segment.read_bytes()
    assert len(data) > 5 * 40 * SIZE and len(data) < 5 * 40 * SIZE + 5 * 4096
    assert data.count(b"p0-big-000123-") == 1
    wal = db_path(url).with_name("streams.db-wal")
    db = db_path(url).read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"p0-big-000123-" not in db  # the value is not also in the database


def test_small_records_and_durability_process_keep_payloads_inline(tmp_path: Path) -> None:
    for url, size in ((f"local:{tmp_path / 'a'}", 100),
                      (f"local:{tmp_path / 'b'}?durability=process", SIZE)):
        with millstream.open_streams(url) as streams:
            streams.admin().create_stream("s")
            with streams.open_producer() as producer:
                producer.send_batch("s", [b"x" * size] * 40).wait(30)
        plain = url.split("?")[0]
        assert [s for _, _, s, _ in _rows(plain)] == [None]
        assert _segment_files(plain) == []


def test_a_flipped_byte_in_a_segment_file_is_reported_with_its_batch_offsets(
        url: str) -> None:
    _produce(url, "rot", batches=4)
    [segment] = _segment_files(url)
    data = bytearray(segment.read_bytes())
    needle = b"p0-big-000090-"
    assert data.count(needle) == 1
    data[data.index(needle) + 5000] ^= 0x10  # inside the value, far from its head
    segment.write_bytes(bytes(data))

    with millstream.open_streams(url) as streams, streams.open_consumer() as consumer:
        consumer.subscribe(["rot"])
        read: list[millstream.Record] = []
        with pytest.raises(CorruptDataError, match=r"'rot' partition 0.*80\.\.119.*CRC"):
            for _ in range(20):
                read.extend(consumer.poll(max_records=30, timeout=0))
        assert [r.offset for r in read] == list(range(80))
        assert [r.value for r in read] == [_value(0, i) for i in range(80)]
        assert consumer.position(StreamPartition("rot", 0)) == 80
        with pytest.raises(CorruptDataError, match=r"80\.\.119"):  # stays at the damage
            consumer.poll(timeout=0)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_missing_or_cut_segment_file_is_damage_naming_the_file(url: str, damage: str) -> None:
    _produce(url, "gone", batches=3)
    [segment] = _segment_files(url)
    if damage == "deleted":
        segment.unlink()
    else:
        with open(segment, "r+b") as f:
            f.truncate(segment.stat().st_size - 1)
    with millstream.open_streams(url) as streams, streams.open_consumer() as consumer:
        consumer.subscribe(["gone"])
        first = 0 if damage == "deleted" else 80
        read: list[millstream.Record] = []
        with pytest.raises(CorruptDataError) as caught:
            for _ in range(10):
                read.extend(consumer.poll(max_records=1000, timeout=0))
        assert [r.offset for r in read] == list(range(first))
        message = str(caught.value)
        assert f"{first}..{first + 39}" in message and str(segment) in message
        assert "missing or shorter" in message


CHILD = """
import sys, millstream
url, n = sys.argv[1], int(sys.argv[2])
value = lambda i: b"p0-big-%06d-" % i + bytes((i + j) % 251 for j in range(10240 - 14))
with millstream.open_streams(url) as streams:
    streams.admin().ensure_stream("crash")
    producer = streams.open_producer()
    for k in range(n):
        producer.send_batch("crash", [value(k * 40 + i) for i in range(40)]).wait(30)
        print(k, flush=True)
"""


@pytest.mark.parametrize("point", ["log.append.after_segment_write", "log.append.before_commit"])
def test_a_crash_between_the_segment_write_and_the_commit_loses_only_the_unacknowledged_batch(
        url: str, point: str) -> None:
    env = {**os.environ, "MILLSTREAM_FAULT": f"{point}:3", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, url, "5"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == FAULT_EXIT_CODE, done.stderr
    assert done.stdout.split() == ["0", "1"]  # two batches acknowledged, the third died
    [segment] = _segment_files(url)
    assert segment.stat().st_size > 3 * 40 * SIZE  # the third batch's bytes, unreferenced
    assert [(b, s) for b, _, s, _ in _rows(url)] == [(0, 1), (40, 1)]
    _produce(url, "crash", batches=2)  # appends go on after the orphaned bytes
    with millstream.open_streams(url) as streams:
        records = read_all(streams, "crash")
    assert [r.offset for r in records] == list(range(160))
    assert [r.value for r in records] == [_value(0, i) for i in range(160)]
    assert integrity(db_path(url)) == "ok"


def test_retention_deletes_segment_files_no_row_needs_and_keeps_the_current_one(
        url: str) -> None:
    every_3_rows = f"?segment_bytes={3 * 40 * SIZE}"  # a new file every 3 rows
    _produce(url, "aged", batches=8, retention=Retention(max_bytes=2 * 40 * SIZE),
             options=every_3_rows)
    # rows 0-2 went to file 1, 3-5 to file 2, 6-7 to file 3 (current)
    assert [s for _, _, s, _ in _rows(url)] == [1, 1, 1, 2, 2, 2, 3, 3]
    with millstream.open_streams(url) as streams:
        assert streams.admin().enforce_retention() == 6  # the newest two rows stay
        assert [p.start for p in streams.admin().describe_stream("aged").partitions] == [240]
        assert [f.name[-10:] for f in _segment_files(url)] == ["0000000003"]
        records = read_all(streams, "aged")
    assert [r.offset for r in records] == list(range(240, 320))
    assert [r.value for r in records] == [_value(0, i) for i in range(240, 320)]
    _produce(url, "aged", batches=1, options=every_3_rows)  # the current file takes it
    assert [s for _, _, s, _ in _rows(url)] == [3, 3, 3]


READER = """
import sys, millstream
from millstream import StreamPartition
with millstream.open_streams(sys.argv[1]) as streams, streams.open_consumer() as consumer:
    consumer.subscribe(["aged"])
    consumer.seek(StreamPartition("aged", 0), 0)
    try:
        got = consumer.poll(max_records=1000, timeout=0)
        print("records", got[0].offset, len(got))
    except millstream.MillstreamError as exc:
        print(type(exc).__name__, exc)
"""


def test_a_reader_whose_segment_file_retention_deleted_meanwhile_sees_the_retention_gap(
        url: str, tmp_path: Path) -> None:
    """The reader holds a row in its snapshot; retention deletes that row and its file before
    the reader opens it: not damage — the reader sees what retention did."""
    every_3_rows = f"?segment_bytes={3 * 40 * SIZE}"
    _produce(url, "aged", batches=8, retention=Retention(max_bytes=2 * 40 * SIZE),
             options=every_3_rows)
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MILLSTREAM_FAULT_PAUSE":
           "log.read.before_segment", "MILLSTREAM_FAULT_PAUSE_FILE": str(release)}
    reader = subprocess.Popen([sys.executable, "-c", READER, url], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: Path(f"{release}.reached").exists(), 60, "the reader at its row")
        with millstream.open_streams(url) as streams:
            assert streams.admin().enforce_retention() == 6
        assert [f.name[-10:] for f in _segment_files(url)] == ["0000000003"]
        release.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert out.startswith("OffsetOutOfRangeError "), err
    assert "retention removed records before 240" in out


def test_deleting_a_stream_deletes_its_segment_files_and_not_another_streams(
        url: str) -> None:
    every_2_rows = f"?segment_bytes={2 * 40 * SIZE}"
    _produce(url, "doomed", batches=4, options=every_2_rows)  # files 1, 2 (full)
    _produce(url, "kept", batches=1, options=every_2_rows)  # file 3
    _produce(url, "doomed", batches=1, options=every_2_rows)  # file 3 too
    with millstream.open_streams(url) as streams:
        streams.admin().delete_stream("doomed")
        assert [f.name[-10:] for f in _segment_files(url)] == ["0000000003"]
        records = read_all(streams, "kept")
    assert [r.value for r in records] == [_value(0, i) for i in range(40)]


def test_compaction_of_large_records_keeps_the_latest_per_key_and_frees_their_files(
        url: str) -> None:
    with millstream.open_streams(f"{url}?segment_bytes={40 * SIZE}") as streams:  # a row a file
        streams.admin().create_stream("latest", retention=Retention(compact=True))
        with streams.open_producer() as producer:
            for k in range(4):  # keys 0..39 rewritten 4 times, one row each
                producer.send_batch("latest", [_value(0, k * 40 + i) for i in range(40)],
                                    keys=[b"%d" % i for i in range(40)]).wait(30)
        assert [s for _, _, s, _ in _rows(url)] == [1, 2, 3, 4]
        streams.admin().enforce_retention(force_compact=True)
        assert [s for _, _, s, _ in _rows(url)] == [4]  # the newest row stays as written
        assert [f.name[-10:] for f in _segment_files(url)] == ["0000000004"]
        records = read_all(streams, "latest")
    assert [r.offset for r in records] == list(range(120, 160))
    assert [r.value for r in records] == [_value(0, i) for i in range(120, 160)]


def test_a_version_1_database_is_upgraded_and_its_rows_still_read(url: str) -> None:
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("old")
        with streams.open_producer() as producer:
            producer.send_batch("old", [b"small-%d" % i for i in range(10)]).wait(30)
    conn = sqlite3.connect(db_path(url))  # back to version 1's schema
    conn.executescript("DROP INDEX batches_by_segment; ALTER TABLE batches DROP COLUMN segment;"
                       "UPDATE meta SET value='1' WHERE key='schema';")
    conn.close()
    _produce(url, "old", batches=1)
    conn = sqlite3.connect(db_path(url))
    assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
    conn.close()
    assert [s for _, _, s, _ in _rows(url)] == [None, 1]
    with millstream.open_streams(url) as streams:
        records = read_all(streams, "old")
    assert [r.value for r in records] == (
        [b"small-%d" % i for i in range(10)] + [_value(0, i) for i in range(10, 50)])


WRITER = """
import sys, millstream
url, tag, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
with millstream.open_streams(url) as streams, streams.open_producer() as producer:
    for k in range(n):
        values = [tag + b"-%04d-" % (k * 40 + i) + bytes(10240) for i in range(40)]
        first = producer.send_batch("shared", values).wait(60)[0].offset
        print(k, first, flush=True)
"""


def test_producer_processes_appending_large_records_at_once_lose_and_duplicate_nothing(
        url: str) -> None:
    """Three processes share the segment files (appends under the write lock, a new file
    every 3 batches): every acknowledged value is stored once, at its acknowledged offset."""
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("shared")
    options = f"?segment_bytes={3 * 40 * SIZE}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url + options, tag, "20"],
                                env=env, stdout=subprocess.PIPE, text=True)
               for tag in ("a", "b", "c")]
    acked = {}
    for tag, w in zip("abc", writers, strict=True):
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0
        acked[tag] = {int(k): int(first) for k, first in (line.split() for line in
                                                          out.splitlines())}
        assert sorted(acked[tag]) == list(range(20))
    with millstream.open_streams(url) as streams:
        records = read_all(streams, "shared")
    assert [r.offset for r in records] == list(range(2400))
    at = {r.value[:7]: r.offset for r in records if r.value is not None}
    assert len(at) == 2400  # each value once
    for tag in "abc":
        for k, first in acked[tag].items():
            for i in range(40):
                assert at[tag.encode() + b"-%04d-" % (k * 40 + i)] == first + i
    assert len({s for _, _, s, _ in _rows(url)}) >= 2400 // 120
    assert integrity(db_path(url)) == "ok"


def test_seek_to_timestamp_finds_a_batch_kept_in_a_segment_file(url: str) -> None:
    for _ in range(3):
        _produce(url, "timed", batches=1)  # a stored batch each, 40 records stamped alike
        time.sleep(0.005)
    assert [s for _, _, s, _ in _rows(url)] == [1, 1, 1]
    with millstream.open_streams(url) as streams:
        stamps = [r.timestamp for r in read_all(streams, "timed")]
        assert stamps[40] > stamps[39]
        with streams.open_consumer() as consumer:
            consumer.subscribe(["timed"])
            consumer.seek_to_timestamp(stamps[40])
            got = consumer.poll(max_records=5, timeout=1)
    assert [r.offset for r in got] == [40, 41, 42, 43, 44]
    assert [r.value for r in got] == [_value(0, i) for i in range(40, 45)]
