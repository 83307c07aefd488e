"""Segment files of the embedded log under a hostile reviewer's cases: a reader's snapshot
against compaction that rewrites its row in place, and a database reached through a symlink.
Each case read sound data back as damage (``CorruptDataError``) before its fix."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import millstream
from millstream import Retention
from tests.support.children import REPO
from tests.support.logread import db_path, read_all
from tests.support.waiting import wait_until

SIZE = 10 * 1024


def _value(offset: int) -> bytes:
    head = b"big-%06d-" % offset
    return head + bytes((offset + i) % 251 for i in range(SIZE - len(head)))


def _segments_of(url: str) -> list[int | None]:
    conn = sqlite3.connect(db_path(url))
    try:
        return [s for (s,) in conn.execute(
            "SELECT segment FROM batches ORDER BY stream_id, partition, base_offset")]
    finally:
        conn.close()


READER = """
import sys, millstream
from millstream import StreamPartition
with millstream.open_streams(sys.argv[1]) as streams, streams.open_consumer() as consumer:
    consumer.subscribe(["latest"])
    consumer.seek(StreamPartition("latest", 0), 0)
    try:
        got = consumer.poll(max_records=1000, timeout=0)
        print("records", *[r.offset for r in got])
        print("exact", all(r.value == b"big-%06d-" % r.offset + bytes(
            (r.offset + i) % 251 for i in range(10240 - 11)) for r in got))
    except millstream.MillstreamError as exc:
        print(type(exc).__name__, exc)
"""


def test_a_reader_whose_segment_row_compaction_rewrote_meanwhile_reads_the_kept_records(
        tmp_path: Path) -> None:
    """The reader's snapshot has a row in segment file 1; compaction rewrites that row in
    place (same row id, now inline) and deletes file 1 before the reader opens it. The row is
    still there, so a check of "does the row exist" calls it damage; it is not: the reader
    must read the row again and get the records compaction kept."""
    url = f"local:{tmp_path / 'log'}"
    with millstream.open_streams(f"{url}?segment_bytes={40 * SIZE}") as streams:
        streams.admin().create_stream("latest", retention=Retention(compact=True))
        with streams.open_producer() as producer:
            keys = [b"k%02d" % i for i in range(40)]
            producer.send_batch("latest", [_value(i) for i in range(40)], keys=keys).wait(30)
            for k in range(3):  # keys 0..19 rewritten three times; 20..39 only in row 0
                first = 40 + k * 20
                producer.send_batch("latest", [_value(first + i) for i in range(20)],
                                    keys=keys[:20]).wait(30)
    assert _segments_of(url) == [1, 2, 2, 3]
    release = tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MILLSTREAM_FAULT_PAUSE":
           "log.read.before_segment", "MILLSTREAM_FAULT_PAUSE_FILE": str(release)}
    reader = subprocess.Popen([sys.executable, "-c", READER, url], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: Path(f"{release}.reached").exists(), 60, "the reader at row 0")
        with millstream.open_streams(url) as streams:
            assert streams.admin().enforce_retention(force_compact=True) == 2
        assert _segments_of(url) == [None, 3]  # row 0 rewritten inline, file 1 deleted
        assert not (tmp_path / "log" / "streams.db-segment-0000000001").exists()
        release.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    kept = [*range(20, 40), *range(80, 100)]
    assert out.splitlines() == ["records " + " ".join(map(str, kept)), "exact True"], err


def test_large_records_read_back_when_streams_db_is_a_symlink_to_another_directory(
        tmp_path: Path) -> None:
    """SQLite opens a symlinked database at its target (and reports that path); writers and
    readers must look for segment files in one place, or every large batch reads as damage."""
    real = tmp_path / "disk"
    with millstream.open_streams(f"local:{real}") as streams:
        streams.admin().create_stream("big")
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "streams.db").symlink_to(real / "streams.db")
    url = f"local:{tmp_path / 'log'}"
    with millstream.open_streams(url) as streams:
        with streams.open_producer() as producer:
            for k in range(3):
                producer.send_batch("big", [_value(k * 40 + i) for i in range(40)]).wait(30)
        records = read_all(streams, "big")
    assert [r.offset for r in records] == list(range(120))
    assert [r.value for r in records] == [_value(i) for i in range(120)]
    conn = sqlite3.connect(real / "streams.db")
    try:
        assert [s for (s,) in conn.execute("SELECT segment FROM batches")] == [1, 1, 1]
    finally:
        conn.close()
