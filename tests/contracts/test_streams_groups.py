"""Streams contract: consumer groups — sharing, moving partitions, fencing, many processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream import Consumer, Record, StreamPartition
from tests.support.backends import BackendUnderTest
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def drain(consumers: list[Consumer], seen: list[Record], until: int, timeout: float) -> None:
    """Poll every consumer in turn until ``seen`` holds ``until`` records."""
    deadline = time.monotonic() + timeout
    while len(seen) < until:
        assert time.monotonic() < deadline, f"only {len(seen)} of {until} records arrived"
        for c in consumers:
            seen.extend(c.poll(100, timeout=0.05))


def all_partitions(stream: str, n: int) -> set[StreamPartition]:
    return {StreamPartition(stream, p) for p in range(n)}


def test_members_share_partitions_and_each_record_is_read_once(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=4)
    group = backend.new_group()
    streams = backend.open()
    with streams.open_consumer(group) as a, streams.open_consumer(group) as b:
        a.subscribe([stream])
        b.subscribe([stream])

        def split() -> bool:
            a.poll(10, timeout=0.05)
            b.poll(10, timeout=0.05)
            return len(a.assignment()) == 2 and len(b.assignment()) == 2

        wait_until(split, backend.rebalance_s, "two members to own two partitions each")
        assert set(a.assignment()) | set(b.assignment()) == all_partitions(stream, 4)
        with streams.open_producer() as producer:
            producer.send_batch(stream, [f"{i}".encode() for i in range(400)],
                                keys=[f"{i}".encode() for i in range(400)])
        seen: list[Record] = []
        drain([a, b], seen, 400, 30)
        assert sorted(int(r.value or b"") for r in seen) == list(range(400))
        assert Counter(r.position for r in seen).most_common(1)[0][1] == 1


def test_a_member_that_leaves_hands_its_partitions_over(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    group = backend.new_group()
    streams = backend.open()
    revoked: list[StreamPartition] = []
    with streams.open_consumer(group) as a:
        a.subscribe([stream], on_revoke=revoked.extend)

        def owns_everything() -> bool:
            a.poll(10, timeout=0.05)
            return set(a.assignment()) == all_partitions(stream, 2)

        # a owns both partitions before b joins (else, on Kafka, both can join in one
        # rebalance and a never held what b gets)
        wait_until(owns_everything, backend.rebalance_s, "the first member to own everything")
        b = streams.open_consumer(group)
        b.subscribe([stream])

        def balanced() -> bool:
            a.poll(10, timeout=0.05)
            b.poll(10, timeout=0.05)
            return len(a.assignment()) == 1 and len(b.assignment()) == 1

        wait_until(balanced, backend.rebalance_s, "the partitions to split")
        # a gave up (at least) the partition b now owns, through on_revoke
        assert set(b.assignment()) <= set(revoked)
        start = time.monotonic()
        b.close()

        wait_until(owns_everything, backend.rebalance_s, "the remaining member to own everything")
        assert time.monotonic() - start < backend.rebalance_s


def test_a_revoked_member_can_commit_in_on_revoke_and_the_next_owner_resumes_there(
        backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=1)
    with backend.open().open_producer() as producer:
        producer.send_batch(stream, [f"{i}".encode() for i in range(10)])
    group = backend.new_group()
    streams = backend.open()
    sp = StreamPartition(stream, 0)
    a = streams.open_consumer(group)

    def commit_on_revoke(parts: list[StreamPartition]) -> None:
        a.commit({p: 7 for p in parts})

    a.subscribe([stream], on_revoke=commit_on_revoke)
    assert [r.offset for r in a.poll(7, timeout=5)] == list(range(7))
    a.close()  # leaving revokes: a commits 7 on the way out
    with streams.open_consumer(group) as b:
        b.subscribe([stream])
        assert b.committed([sp]) == {sp: 7}
        assert b.poll(10, timeout=5)[0].offset == 7


def test_a_member_that_lost_a_partition_cannot_commit_for_it(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    group = backend.new_group()
    streams = backend.open()
    with streams.open_consumer(group) as a, streams.open_consumer(group) as b:
        a.subscribe([stream])
        b.subscribe([stream])

        def split() -> bool:
            a.poll(1, timeout=0.05)
            b.poll(1, timeout=0.05)
            return len(a.assignment()) == 1 and len(b.assignment()) == 1

        wait_until(split, backend.rebalance_s, "the partitions to split")
        theirs = b.assignment()[0]
        pattern = re.escape(str(theirs))
        with pytest.raises(millstream.FencedError, match=pattern):
            a.commit({theirs: 0})
        assert b.committed([theirs]) == {theirs: None}  # nothing was committed
        b.commit({theirs: 0})
        assert a.committed([theirs]) == {theirs: 0}


def _spawn(*args: str, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.stream_worker", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


class _Reader:
    """Collects a consumer child's output lines on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # a line without its newline is the last one of a killed child, cut mid-print
            # ("rec 3 120 " without its value): not a record it read
            if line.endswith("\n"):
                self.lines.append(line[:-1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.thread.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def records(self) -> list[tuple[int, int, str]]:
        out = []
        for line in list(self.lines):
            parts = line.split(" ")
            if len(parts) == 4 and parts[0] == "rec" and parts[1].isdigit() \
                    and parts[2].isdigit():
                out.append((int(parts[1]), int(parts[2]), parts[3]))
        return out


@pytest.mark.multiprocess
def test_producer_processes_and_a_consumer_group_with_a_member_killed(
        backend: BackendUnderTest) -> None:
    """Three producer processes, a group of three consumer processes, one SIGKILLed midway:
    every acknowledged record is consumed, no offset is skipped, and the group's committed
    offsets reach the end of every partition. The log then holds exactly the 9,000
    acknowledged values, each once, at dense offsets (C1)."""
    stream = backend.new_stream(partitions=6)
    group = backend.new_group()
    consumers = [_Reader(_spawn("consume", backend.url, stream, group, stderr=subprocess.STDOUT))
                 for _ in range(3)]
    try:
        _run_group_with_a_kill(backend, stream, group, consumers)
    finally:
        for c in consumers:
            c.close()


def _run_group_with_a_kill(backend: BackendUnderTest, stream: str, group: str,
                           consumers: list[_Reader]) -> None:
    for c in consumers:
        wait_until(lambda c=c: "joined" in c.lines, 30, "a consumer to join")
    producers = [_spawn("produce", backend.url, stream, "3000", f"p{i}") for i in range(3)]
    wait_until(lambda: len(consumers[0].records()) > 50, 60,
               f"the first consumer to read ({[c.lines[-5:] for c in consumers]})")
    victim = consumers[0]
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    acked: set[str] = set()
    for p in producers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        acked |= {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("ack ")}
    assert len(acked) == 9000
    survivors = consumers[1:]

    def everything_read() -> bool:
        values = {v for c in consumers for _, _, v in c.records()}
        return acked <= values

    wait_until(everything_read, 60 + backend.rebalance_s, "every acknowledged record to be read")
    info = backend.open().admin().describe_stream(stream)

    def committed_to_end() -> bool:
        g = backend.open().admin().describe_group(group)
        return sum(p.committed or 0 for p in g.partitions) == info.records

    wait_until(committed_to_end, 30, "the group to commit up to the end")
    for c in survivors:
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(30) == 0, c.lines[-20:]
    # nothing skipped: every offset of every partition was delivered at least once
    seen = {(p, o) for c in consumers for p, o, _ in c.records()}
    expected = {(p.partition, o) for p in info.partitions for o in range(p.start, p.end)}
    assert seen == expected
    # values seen are exactly the acknowledged ones (duplicates allowed: at-least-once)
    assert {v for c in consumers for _, _, v in c.records()} == acked
    # the log itself holds every acknowledged value exactly once, at dense offsets: a fresh
    # reader from the start counts them (a set would let a duplicated append pass)
    assert info.records == 9000
    stored = _read_everything(backend, stream, 9000)
    counts = Counter(value for _, _, value in stored)
    assert len(stored) == 9000
    assert set(counts) == acked and set(counts.values()) == {1}, \
        [v for v, n in counts.items() if n != 1][:5]
    for p in info.partitions:
        assert p.start == 0
        assert sorted(o for q, o, _ in stored if q == p.partition) == list(range(p.end))


def _read_everything(backend: BackendUnderTest, stream: str, expected: int
                     ) -> list[tuple[int, int, str]]:
    """``(partition, offset, value)`` of every record of ``stream``, by a standalone consumer
    from the start; it polls on briefly after ``expected`` so extra records would show."""
    out: list[tuple[int, int, str]] = []
    with backend.open().open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 60
        while len(out) < expected and time.monotonic() < deadline:
            out += [(r.partition, r.offset, (r.value or b"").decode())
                    for r in consumer.poll(1000, timeout=0.5)]
        out += [(r.partition, r.offset, (r.value or b"").decode())
                for r in consumer.poll(1000, timeout=0.5)]
    return out


@pytest.mark.multiprocess
def test_a_killed_members_partitions_move_within_the_bound(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=3)
    group = backend.new_group()
    child = _Reader(_spawn("consume", backend.url, stream, group, stderr=subprocess.STDOUT))
    try:
        wait_until(lambda: "joined" in child.lines, 30, "the child consumer to join")
        with backend.open().open_consumer(group) as survivor:
            survivor.subscribe([stream])

            def shared() -> bool:
                survivor.poll(10, timeout=0.05)
                return 0 < len(survivor.assignment()) < 3

            wait_until(shared, backend.rebalance_s, "the child and the survivor to share")
            os.kill(child.proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()

            def took_all() -> bool:
                survivor.poll(10, timeout=0.05)
                return set(survivor.assignment()) == all_partitions(stream, 3)

            wait_until(took_all, backend.rebalance_s + 5, "the survivor to take every partition")
            moved_after = time.monotonic() - killed_at
            assert backend.session_s * 0.5 <= moved_after <= backend.rebalance_s, moved_after
    finally:
        child.close()


def test_reset_offsets_per_partition_and_refusals(backend: BackendUnderTest) -> None:
    stream = backend.new_stream(partitions=2)
    group = backend.new_group()
    streams = backend.open()
    with streams.open_producer() as producer:
        producer.send_batch(stream, [b"x"] * 5, partition=0).wait(60)
        producer.send_batch(stream, [b"y"] * 3, partition=1).wait(60)
    admin = streams.admin()
    assert admin.reset_offsets(group, stream, {0: 4, 1: 1}) == {
        StreamPartition(stream, 0): 4, StreamPartition(stream, 1): 1}
    with streams.open_consumer(group) as consumer:
        consumer.subscribe([stream])
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += [(r.partition, r.offset) for r in consumer.poll(timeout=0.5)]
    assert sorted(got) == [(0, 4), (1, 1), (1, 2)]
    with pytest.raises(millstream.InvalidRequestError, match=r"partitions \[0\], but the stream "
                       r"has partitions 0\.\.1"):
        admin.reset_offsets(group, stream, {0: 1})
    with pytest.raises(millstream.OffsetOutOfRangeError, match=r"\[1\]'s retained range 0\.\.3"):
        admin.reset_offsets(group, stream, {0: 0, 1: 7})
    assert {p.partition: p.committed for p in admin.describe_group(group).partitions
            if p.stream == stream} == {0: 4, 1: 1}  # a refused reset changed nothing


def test_reset_offsets_applies_what_it_returns_and_names_a_missing_stream(
        backend: BackendUnderTest) -> None:
    """A group that does not exist yet is created by its reset, as Kafka's own tools do; what
    the reset returns is what the group then has committed. A missing stream is refused with
    ``UnknownStreamError`` naming it, and changes nothing."""
    stream = backend.new_stream(partitions=2)
    group = backend.new_group()
    streams = backend.open()
    with streams.open_producer() as producer:
        producer.send_batch(stream, [b"x"] * 3, partition=0).wait(60)
    admin = streams.admin()
    assert group not in admin.list_groups()
    applied = {StreamPartition(stream, 0): 3, StreamPartition(stream, 1): 0}
    assert admin.reset_offsets(group, stream, "latest") == applied
    assert {StreamPartition(p.stream, p.partition): p.committed
            for p in admin.describe_group(group).partitions} == applied
    assert group in admin.list_groups()

    missing = f"missing-{backend.new_group()}"
    other = backend.new_group()
    for who in (other, group):
        with pytest.raises(millstream.UnknownStreamError,
                           match=rf"stream '{missing}' does not exist") as info:
            admin.reset_offsets(who, missing, "earliest")
        assert isinstance(info.value, millstream.NotFoundError)
        assert not info.value.retriable
    assert other not in admin.list_groups()
    assert {StreamPartition(p.stream, p.partition): p.committed
            for p in admin.describe_group(group).partitions} == applied
