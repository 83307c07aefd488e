"""A streams handle shared by threads (``Streams`` promises it): admin calls made from several
threads at once give exactly what one thread alone would, and raise nothing unexpected."""

from __future__ import annotations

import threading
import uuid

import pytest

import millstream
from millstream.records import StreamPartition
from millstream.streams._base import PartitionInfo
from tests.support.backends import BackendUnderTest

SHARED_RECORDS = 5


def test_threads_sharing_one_handle_get_exact_admin_answers(backend: BackendUnderTest) -> None:
    threads, rounds = (6, 10) if backend.name == "local" else (3, 2)
    streams = backend.open()
    shared = backend.new_stream()
    with backend.open().open_producer() as producer:
        for n in range(SHARED_RECORDS):
            producer.send(shared, str(n).encode(), partition=0)
        producer.flush()
    run = uuid.uuid4().hex[:8]
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def one_round(i: int, n: int) -> None:
        admin = streams.admin()
        name, group = f"thr-{run}-{i}-{n}", f"thr-{run}-g{i}"
        partitions = 1 + (i + n) % 3
        empty = tuple(PartitionInfo(p, 0, 0, 0) for p in range(partitions))
        info = admin.ensure_stream(name, partitions)
        assert (info.name, [(p.partition, p.start, p.end) for p in info.partitions]) == (
            name, [(p.partition, 0, 0) for p in empty])
        assert len(admin.ensure_stream(name, 7).partitions) == partitions  # not changed
        with pytest.raises(millstream.AlreadyExistsError):
            admin.create_stream(name, partitions)
        assert name in admin.list_streams()
        assert admin.reset_offsets(group, name, "earliest") == {
            StreamPartition(name, p): 0 for p in range(partitions)}
        assert [(lag.partition, lag.committed) for lag in admin.describe_group(group).partitions
                if lag.stream == name] == [(p, 0) for p in range(partitions)]
        assert group in admin.list_groups()
        assert [(p.start, p.end) for p in admin.describe_stream(shared).partitions] == [
            (0, SHARED_RECORDS)]
        admin.delete_stream(name)
        assert name not in admin.list_streams()
        with pytest.raises(millstream.UnknownStreamError):
            admin.describe_stream(name)

    def body(i: int) -> None:
        try:
            start.wait(30)
            for n in range(rounds):
                one_round(i, n)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(300)
    assert not any(t.is_alive() for t in pool), "an admin thread hung"
    assert errors == []
    assert not [s for s in streams.admin().list_streams() if s.startswith(f"thr-{run}")]
