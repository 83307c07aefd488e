"""One embedded-log handle used by several threads at once: its admin calls neither collide
nor mix their transactions, and they give exactly what one thread alone would.

The handle's admin shares one SQLite connection; the web site's request threads and a test
platform's helpers call it from many threads at once (issue 11: "cannot start a transaction
within a transaction" in ``ensure_stream``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import millstream
from millstream.errors import AlreadyExistsError, ClosedError, UnknownStreamError
from millstream.records import StreamPartition
from millstream.streams._base import Admin, PartitionInfo, Streams

THREADS = 6
ROUNDS = 25
SHARED_RECORDS = 10


def run_threads(work: Callable[[int], None], threads: int = THREADS) -> list[BaseException]:
    """Run ``work(i)`` in ``threads`` threads started together; the errors they raised."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            start.wait(10)
            work(i)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(i,), name=f"admin-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    assert not any(t.is_alive() for t in pool), "an admin thread hung"
    return errors


def one_round(admin: Admin, i: int, n: int) -> None:
    """Everything the Admin protocol offers, on this thread's own stream and group, with the
    exact answer each must give; and reads of the stream every thread shares."""
    name, group = f"t{i}.r{n}", f"g{i}"
    partitions = 1 + (i + n) % 3
    empty = tuple(PartitionInfo(p, 0, 0, 0) for p in range(partitions))
    info = admin.ensure_stream(name, partitions)
    assert (info.name, info.partitions) == (name, empty)
    again = admin.ensure_stream(name, 7)  # exists: described as it is, not changed
    assert (again.name, again.partitions) == (name, empty)
    with pytest.raises(AlreadyExistsError):
        admin.create_stream(name, partitions)
    assert name in admin.list_streams()
    assert admin.describe_stream(name).partitions == empty
    assert admin.reset_offsets(group, name, "earliest") == {
        StreamPartition(name, p): 0 for p in range(partitions)}
    lags = admin.describe_group(group).partitions
    assert [(lag.stream, lag.partition, lag.committed) for lag in lags
            if lag.stream == name] == [(name, p, 0) for p in range(partitions)]
    assert group in admin.list_groups()
    shared = admin.describe_stream("shared")
    assert [(p.start, p.end) for p in shared.partitions] == [(0, SHARED_RECORDS)]
    assert admin.enforce_retention() == 0  # type: ignore[attr-defined]
    admin.delete_stream(name)
    assert name not in admin.list_streams()
    with pytest.raises(UnknownStreamError):
        admin.describe_stream(name)
    with pytest.raises(UnknownStreamError):
        admin.delete_stream(name)


@pytest.fixture
def streams(tmp_path: Path) -> Streams:
    handle = millstream.open_streams(f"local:{tmp_path}")
    handle.admin().create_stream("shared", 1)
    with handle.open_producer() as producer:
        for n in range(SHARED_RECORDS):
            producer.send("shared", str(n).encode())
    return handle


def test_threads_sharing_one_handle_get_exact_admin_answers_and_no_error(
        streams: Streams) -> None:
    shared_admin = streams.admin()

    def work(i: int) -> None:
        for n in range(ROUNDS):
            # half the threads share one Admin object, half ask the handle for one each time
            one_round(shared_admin if i % 2 else streams.admin(), i, n)

    try:
        errors = run_threads(work)
        assert errors == []
        admin = streams.admin()
        assert admin.list_streams() == ["shared"]
        assert admin.list_groups() == []  # their offsets went with the deleted streams
    finally:
        streams.close()


def test_a_handle_hammered_by_threads_still_waits_out_another_writer(
        streams: Streams, tmp_path: Path) -> None:
    """Each write transaction lowers the connection's busy timeout for its attempt and puts
    it back; threads interleaving there could leave it at 4 ms, and every later admin write
    would fail at once behind another process's writer."""
    try:
        def writes(i: int) -> None:
            for n in range(ROUNDS * 20):  # mostly existing streams: quick write transactions
                try:
                    streams.admin().ensure_stream(f"t{i}.r{n % 5}")
                except Exception:  # noqa: S110  (what they raise is the other test's matter)
                    pass

        run_threads(writes)
        other = sqlite3.connect(tmp_path / "streams.db", isolation_level=None,
                                check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 0.3 s
            release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
            release.start()
            began = time.monotonic()
            info = streams.admin().create_stream("after", 2)
            waited = time.monotonic() - began
            release.join()
        finally:
            other.close()
        assert [p.partition for p in info.partitions] == [0, 1]
        assert waited >= 0.25
    finally:
        streams.close()


def test_an_admin_used_after_its_handle_closed_raises_closed_error_naming_the_handle(
        tmp_path: Path) -> None:
    streams = millstream.open_streams(f"local:{tmp_path}")
    admin = streams.admin()
    admin.create_stream("s", 1)
    streams.close()
    for call in (admin.list_streams, lambda: admin.describe_stream("s"),
                 lambda: admin.ensure_stream("s"), lambda: admin.delete_stream("s"),
                 admin.list_groups, lambda: admin.reset_offsets("g", "s", "earliest")):
        with pytest.raises(ClosedError, match=r"streams handle for local:.* is closed"):
            call()
