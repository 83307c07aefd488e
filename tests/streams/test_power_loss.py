"""Durability against power loss: what was fsynced before an acknowledgement is all that counts.

A child process runs with an LD_PRELOAD shim (tests/support/syncspy.c) that logs every
successful fsync/fdatasync with the file's size. After the child acknowledged its records and
exited, the test simulates a power loss by cutting every file back to its last synced size
(writes never synced are lost) and reopens the log. With the default durability every
acknowledged record must survive; with ``durability=process`` (which does not fsync each
commit) acknowledged records are lost — proving the test can tell the two apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import millstream
from millstream.faults import FAULT_EXIT_CODE
from tests.support.platform_fixtures import require_services

SHIM = Path(__file__).resolve().parents[1] / "support" / "syncspy.c"
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, millstream
url, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with millstream.open_streams(url) as streams:
    streams.admin().ensure_stream("ledger")
    producer = streams.open_producer()
    for i in range(n):
        value = f"entry-{i}".encode()
        if size:  # large records: batches of ten, stored in segment files
            if i % 10 == 9:
                producer.send_batch("ledger", [f"entry-{i - 9 + j}".encode().ljust(size, b".")
                                               for j in range(10)]).wait(30)
                print(*range(i - 9, i + 1), flush=True)
            continue
        producer.send("ledger", value).wait(30)
        print(i, flush=True)
    import os
    os._exit(0)  # no close, no checkpoint: the process vanishes right after its acks
"""


@pytest.fixture(scope="module")
def syncspy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if require_services():
            pytest.fail("no C compiler (cc/gcc) to build the fsync shim; install gcc")
        pytest.skip("no C compiler (cc/gcc) to build the fsync shim")
    out = tmp_path_factory.mktemp("shim") / "syncspy.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(SHIM), "-ldl"],
                   check=True)
    return out


def _run_and_lose_power(tmp_path: Path, shim: Path, options: str, n: int,
                        value_size: int = 0) -> tuple[int, int]:
    """Run the child, cut files to their synced sizes; return (acknowledged, surviving)."""
    log_dir = tmp_path / "log"
    sync_log = tmp_path / "syncs.txt"
    url = f"local:{log_dir}{options}"
    env = {**os.environ, "LD_PRELOAD": str(shim), "SYNCSPY_LOG": str(sync_log),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(n), str(value_size)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    acked = len(done.stdout.split())
    synced: dict[str, int] = {}
    for line in sync_log.read_text().splitlines() if sync_log.exists() else []:
        size, path = line.split(" ", 1)
        synced[path] = int(size)
    for path in log_dir.iterdir():  # the power loss: unsynced bytes are gone
        keep = synced.get(str(path), 0)
        if path.stat().st_size > keep:
            with open(path, "r+b") as f:
                f.truncate(keep)
    (log_dir / "streams.db-shm").unlink(missing_ok=True)  # shared memory does not survive
    with millstream.open_streams(f"local:{log_dir}") as streams:
        if "ledger" not in streams.admin().list_streams():
            return acked, 0
        with streams.open_consumer() as consumer:
            consumer.subscribe(["ledger"])
            values = [r.value for r in consumer.poll(10 * n, timeout=1)]
    expected = [f"entry-{i}".encode() for i in range(len(values))]
    if value_size:
        expected = [v.ljust(value_size, b".") for v in expected]
    assert values == expected  # a prefix, in order
    return acked, len(values)


def test_every_acknowledged_record_survives_a_power_loss(tmp_path: Path, syncspy: Path) -> None:
    acked, surviving = _run_and_lose_power(tmp_path, syncspy, "", 200)
    assert acked == 200
    assert surviving == 200


def test_every_acknowledged_large_record_survives_a_power_loss(
        tmp_path: Path, syncspy: Path) -> None:
    """10 KB records go to segment files, fsynced before the row that refers to them commits."""
    acked, surviving = _run_and_lose_power(tmp_path, syncspy, "", 200, value_size=10 * 1024)
    assert acked == 200
    assert surviving == 200
    assert len(list((tmp_path / "log").glob("streams.db-segment-*"))) == 1


def test_durability_process_may_lose_acknowledged_records_on_power_loss(
        tmp_path: Path, syncspy: Path) -> None:
    acked, surviving = _run_and_lose_power(tmp_path, syncspy, "?durability=process", 200)
    assert acked == 200
    assert surviving < acked  # what the faster setting trades away, as documented


WRITE_THEN_DELETE = """
import sys, millstream
url, step = sys.argv[1], sys.argv[2]
with millstream.open_streams(url) as streams:
    if step == "write":  # three batches of 10 x 10 KB, a segment file each
        streams.admin().create_stream("ledger")
        producer = streams.open_producer()
        for k in range(3):
            producer.send_batch("ledger", [f"entry-{k * 10 + j}".encode().ljust(10240, b".")
                                           for j in range(10)]).wait(30)
    else:
        streams.admin().delete_stream("ledger")
    import os
    os._exit(0)  # no close, no checkpoint
"""


def test_a_stream_deleted_through_durability_process_is_whole_or_gone_after_a_power_loss(
        tmp_path: Path, syncspy: Path) -> None:
    """A database written with the default durability, then opened with
    ``durability=process`` (whose commits are not fsynced) to delete a stream: the deletion
    may be lost with the power, but the segment files it freed must not be deleted before it is
    durable — else the rows come back pointing at files that are gone (damage)."""
    log_dir = tmp_path / "log"
    sync_log = tmp_path / "syncs.txt"
    env = {**os.environ, "LD_PRELOAD": str(syncspy), "SYNCSPY_LOG": str(sync_log),
           "PYTHONPATH": str(ROOT)}
    for step, options in (("write", f"?segment_bytes={100 * 1024}"),
                          ("delete", "?durability=process")):
        subprocess.run([sys.executable, "-c", WRITE_THEN_DELETE, f"local:{log_dir}{options}",
                        step], env=env, capture_output=True, text=True, timeout=120,
                       check=True)
    assert sorted(p.name[-2:] for p in log_dir.glob("streams.db-segment-*")) == ["03"]
    synced: dict[str, int] = {}
    for line in sync_log.read_text().splitlines():
        size, path = line.split(" ", 1)
        synced[path] = int(size)
    for path in log_dir.iterdir():  # the power loss
        if path.is_file() and path.stat().st_size > synced.get(str(path), 0):
            with open(path, "r+b") as f:
                f.truncate(synced.get(str(path), 0))
    (log_dir / "streams.db-shm").unlink(missing_ok=True)
    with millstream.open_streams(f"local:{log_dir}") as streams:
        if "ledger" in streams.admin().list_streams():  # the deletion was lost: all there
            with streams.open_consumer() as consumer:
                consumer.subscribe(["ledger"])
                values = [r.value for r in consumer.poll(100, timeout=1)]
            assert values == [f"entry-{i}".encode().ljust(10240, b".") for i in range(30)]


ROLLING = """
import os, sys, millstream
url = sys.argv[1]
batch = lambda k: [f"entry-{k * 10 + j}".encode().ljust(10240, b".") for j in range(10)]
with millstream.open_streams(url) as streams:
    streams.admin().ensure_stream("ledger")
    producer = streams.open_producer()
    for k in map(int, sys.argv[2:]):
        if k < 0:
            sys.stdin.readline()  # wait for the other writer
            continue
        producer.send_batch("ledger", batch(k)).wait(30)
        print(k, flush=True)
    os._exit(0)
"""


def test_a_segment_file_a_crashed_writer_created_gets_its_directory_entry_synced_by_the_next(
        tmp_path: Path, syncspy: Path) -> None:
    """A writer dies after its rollover created (and synced) the next segment file but before
    it synced the directory (``log.append.before_directory_sync``). A live producer then rolls
    over to that same file: its row must not commit before the file's directory entry is
    durable — a power loss would drop the file and leave the row pointing at nothing. The
    power loss here also drops every segment file whose directory was not synced after the
    file's first sync."""
    log_dir = tmp_path / "log"
    sync_log = tmp_path / "syncs.txt"
    url = f"local:{log_dir}?segment_bytes={100 * 1024}"  # a file per batch of 10 x 10 KB
    env = {**os.environ, "LD_PRELOAD": str(syncspy), "SYNCSPY_LOG": str(sync_log),
           "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-c", ROLLING, url, "0", "-1", "2"], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as live:
        assert live.stdout is not None and live.stdin is not None
        assert live.stdout.readline() == "0\n"  # file 1, with its directory synced
        crashed = subprocess.run(
            [sys.executable, "-c", ROLLING, url, "1"], capture_output=True, text=True,
            timeout=120, env={**env, "MILLSTREAM_FAULT": "log.append.before_directory_sync"})
        assert crashed.returncode == FAULT_EXIT_CODE, crashed.stderr
        live.stdin.write("go\n")
        live.stdin.flush()
        assert live.stdout.readline() == "2\n"  # acknowledged: it must survive
        assert live.wait(60) == 0
    lines = [line.split(" ", 1) for line in sync_log.read_text().splitlines()]
    synced = {path: int(size) for size, path in lines}
    first = {}
    for i, (_, path) in enumerate(lines):
        first.setdefault(path, i)
    for path in log_dir.iterdir():  # the power loss
        if not path.is_file():
            continue
        if "-segment-" in path.name and not any(
                p == str(log_dir) and i > first.get(str(path), len(lines))
                for i, (_, p) in enumerate(lines)):
            path.unlink()  # created, and its directory never synced after
        elif path.stat().st_size > synced.get(str(path), 0):
            with open(path, "r+b") as f:
                f.truncate(synced.get(str(path), 0))
    (log_dir / "streams.db-shm").unlink(missing_ok=True)
    with millstream.open_streams(f"local:{log_dir}") as streams, \
            streams.open_consumer() as consumer:
        consumer.subscribe(["ledger"])
        got = consumer.poll(100, timeout=1)
    assert [r.offset for r in got] == list(range(20))
    assert [r.value for r in got] == [f"entry-{i}".encode().ljust(10240, b".")
                                      for i in (*range(10), *range(20, 30))]
