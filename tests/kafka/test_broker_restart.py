"""A single Kafka broker SIGKILLed and restarted under a live consumer and a live producer.

The broker is this module's own (``KafkaCluster`` with one node in a temp dir): ``kill_node``
SIGKILLs it, ``restart_node`` launches it again on the same ports and data dir (ports are
chosen once, when the cluster is made), so clients keep their bootstrap address. A process
kill, not a power loss: what Kafka had written is in the page cache and survives.
The last test kills the broker under a running service, to see what its producer reports
when it cannot close.

Marker ``kafka_cluster``: the conftest hook sorts these after every single-node test. The
marker alone does not stop the session's single node (only the ``kafka_cluster3`` fixture
does), so the fixture here stops it first; and this file's name sorts before
``test_broker_setup.py``, whose 3-node test starts the shared 3-node cluster — so two
clusters never run at once.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import BaseModel

import millstream
from millstream import (
    Consumer,
    MillstreamError,
    OperationTimeoutError,
    StreamPartition,
    UnavailableError,
)
from millstream.codecs import ModelCodec
from millstream.runtime import ServiceRunner
from millstream.service import App, Context
from tests.support.kafka_cluster import (
    KafkaCluster,
    KafkaStartError,
    KafkaUnavailable,
    find_runtime,
    reap_stale,
)

pytestmark = pytest.mark.kafka_cluster

GROUP_OPTIONS = "session.timeout.ms=6000&heartbeat.interval.ms=1000"


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[KafkaCluster]:
    """One broker of our own, killed and restarted by the tests."""
    # the session's single node: stopped, as kafka_cluster3 does
    import tests.support.platform_fixtures as root

    if root._kafka_single is not None:
        root._kafka_single.stop(grace=root.DONE_GRACE_S)
    base = Path(tempfile.gettempdir())
    reap_stale(base)
    try:
        cluster = KafkaCluster(Path(tempfile.mkdtemp(prefix="millstream-kafka-1n-", dir=base)),
                               1, runtime=find_runtime(fetch=True), owner=os.getpid())
        cluster.start()
        cluster.wait_ready(180)
    except (KafkaUnavailable, KafkaStartError) as exc:
        if root.require_services():
            pytest.fail(f"no Kafka broker of our own: {exc} [MILLSTREAM_REQUIRE_SERVICES=1]")
        pytest.skip(f"no Kafka broker of our own: {exc}")
    yield cluster
    cluster.stop(grace=root.DONE_GRACE_S)


def _bounce(cluster: KafkaCluster) -> float:
    """SIGKILL the broker and launch it again at once (it takes seconds to come up)."""
    cluster.kill_node(0)
    cluster.restart_node(0)
    return time.monotonic()


def test_a_group_consumer_reads_on_from_its_commits_after_the_broker_restarts(
        own_kafka: KafkaCluster) -> None:
    """What the adapter does while its only broker is down: ``poll`` keeps returning — the
    records librdkafka had already fetched, then empty lists (librdkafka reconnects by
    itself; its transport errors are logged, not raised). ``commit`` while the broker is down
    raises a retriable millstream error (``UnavailableError``, e.g. "Waiting for
    coordinator", or ``OperationTimeoutError``), never a confluent_kafka type. ``poll`` raises
    only if the group reassigned partitions and their start could not be looked up within
    ``millstream.timeout_ms`` — a retriable ``UnavailableError``; the next poll tries again.
    Once the broker is back the consumer goes on from where it was — or, if its session
    expired and it rejoined, from its last commit (at-least-once: records read twice, never
    skipped) — and ends with every record."""
    url = f"kafka://{own_kafka.bootstrap}?millstream.timeout_ms=5000&{GROUP_OPTIONS}"
    stream, group = f"bounce-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    total = 4000
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, 2)
        with streams.open_producer() as producer:
            for i in range(total):
                producer.send(stream, f"v{i}".encode(), key=str(i % 50).encode())

        order: dict[int, list[int]] = {0: [], 1: []}  # offsets per partition, as read
        errors: list[str] = []
        committed_half: dict[StreamPartition, int] = {}
        with streams.open_consumer(group) as consumer:
            consumer.subscribe([stream])
            deadline = time.monotonic() + 60
            while sum(map(len, order.values())) < total // 2:
                assert time.monotonic() < deadline, "the first half did not arrive"
                for r in consumer.poll(100, timeout=0.5):
                    order[r.partition].append(r.offset)
            consumer.commit()
            committed_half = {sp: off for sp, off in consumer.committed().items()
                              if off is not None}
            assert sum(committed_half.values()) >= total // 2

            t_bounce = _bounce(own_kafka)
            deadline = time.monotonic() + 120
            while sum(len(set(offsets)) for offsets in order.values()) < total:
                assert time.monotonic() < deadline, \
                    f"read {sum(map(len, order.values()))} of {total}; errors: {errors[-5:]}"
                try:
                    records = consumer.poll(200, timeout=0.5)
                except MillstreamError as exc:
                    errors.append(f"poll {type(exc).__name__}: {exc}")
                    assert exc.retriable, exc
                    continue
                for r in records:
                    order[r.partition].append(r.offset)
                if records:
                    try:
                        consumer.commit()
                    except MillstreamError as exc:
                        errors.append(f"commit {type(exc).__name__}: {exc}")
                        assert exc.retriable, exc
            t_done = time.monotonic()
            # every record has been read once; a rejoin after the bounce may still have moved a
            # partition back to its last commit, so read on until the consumer's position is
            # the end everywhere (what it reads again is at-least-once's), then commit that
            ends = {p.partition: p.end
                    for p in streams.admin().describe_stream(stream).partitions}
            while any(consumer.position(StreamPartition(stream, p)) < end
                      for p, end in ends.items()):
                assert time.monotonic() < deadline, f"positions short of {ends}"
                try:
                    records = consumer.poll(200, timeout=0.5)
                except MillstreamError as exc:
                    errors.append(f"poll {type(exc).__name__}: {exc}")
                    assert exc.retriable, exc
                    continue
                for r in records:
                    order[r.partition].append(r.offset)
            consumer.commit()
        info = streams.admin().describe_group(group)

    assert sum(ends.values()) == total
    assert {p.partition: p.committed for p in info.partitions} == ends
    rewinds = 0
    for p, offsets in order.items():
        assert sorted(set(offsets)) == list(range(ends[p])), f"partition {p} misses records"
        for before, after in pairwise(offsets):
            assert after <= before + 1, f"partition {p} skipped from {before} to {after}"
            if after <= before:  # a rewind: only back to a committed offset, never past it
                rewinds += 1
                assert after >= committed_half.get(StreamPartition(stream, p), 0), \
                    f"partition {p} went back to {after}, before its commit"
    duplicates = sum(n - 1 for n in Counter(
        (p, o) for p, offsets in order.items() for o in offsets).values())
    print(f"bounce: {t_done - t_bounce:.1f} s to read the second half, {rewinds} rewinds, "
          f"{duplicates} records read twice, {len(errors)} errors: {errors[:5]}")
    assert all(e.startswith(("commit", "poll UnavailableError")) for e in errors), \
        errors


def test_a_producer_holds_records_while_the_broker_is_down_and_delivers_them_after(
        own_kafka: KafkaCluster) -> None:
    """Records sent while the only broker is down are queued, not lost and not hidden:
    ``wait(timeout)`` and ``flush(timeout)`` raise ``OperationTimeoutError`` within their
    bounds (saying the records may still be delivered / to check the brokers); once the
    broker is back, ``flush`` returns and every handle resolves to the position where the
    record is, in send order per key."""
    url = f"kafka://{own_kafka.bootstrap}?millstream.timeout_ms=5000"
    stream = f"bounce-p-{uuid.uuid4().hex[:8]}"
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream(stream, 2)
        producer = streams.open_producer()
        first = producer.send(stream, b"before", key=b"k0").wait(30)  # metadata is cached
        own_kafka.kill_node(0)

        handles = [producer.send(stream, f"during-{i}".encode(), key=f"k{i % 5}".encode())
                   for i in range(500)]
        t0 = time.monotonic()
        with pytest.raises(OperationTimeoutError, match="may still be delivered"):
            handles[0].wait(1.0)
        with pytest.raises(OperationTimeoutError, match="brokers"):
            producer.flush(2.0)
        assert time.monotonic() - t0 < 1.0 + 2.0 + 2.0
        assert not any(h.done() for h in handles)

        own_kafka.restart_node(0)
        producer.flush(120)  # raises DeliveryError if any record could not be stored
        positions = [h.wait(0) for h in handles]
        producer.close()

        got: dict[tuple[int, int], bytes] = {}
        ends = {p.partition: p.end for p in streams.admin().describe_stream(stream).partitions}
        with streams.open_consumer() as reader:
            reader.subscribe([stream])
            deadline = time.monotonic() + 60
            while len(got) < sum(ends.values()):
                assert time.monotonic() < deadline
                for r in reader.poll(1000, timeout=0.5):
                    got[(r.partition, r.offset)] = r.value or b""
    assert got[(first.partition, first.offset)] == b"before"
    for i, pos in enumerate(positions):
        assert got[(pos.partition, pos.offset)] == f"during-{i}".encode()
    assert len(got) == 501  # nothing stored twice
    for k in range(5):  # per key, in send order
        mine = [positions[i] for i in range(k, 500, 5)]
        assert mine == sorted(mine, key=lambda pos: pos.offset)
        assert len({pos.partition for pos in mine}) == 1


class _Order(BaseModel):
    id: int


class _Line(BaseModel):
    order: int
    n: int


def test_records_a_service_could_not_deliver_at_close_are_reported_and_counted(
        own_kafka: KafkaCluster, caplog: pytest.LogCaptureFixture) -> None:
    """The broker dies while a service handles an order: the order's 5 lines cannot be sent.
    ``run()`` fails at its next commit (the flush times out), and closing the producer, with
    the 5 lines still queued, is reported at ERROR with that count and counted in
    ``statistics().undelivered`` — before, one DEBUG line said so. Order 0 goes first, and
    is committed, so the output stream's partitions are known before the broker dies."""
    suffix = uuid.uuid4().hex[:8]
    orders, lines = f"orders-{suffix}", f"lines-{suffix}"
    app = App(f"close{suffix}", partitions=1)
    lines_per_order = 5

    @app.service(inputs={orders: _Order}, outputs={lines: _Line}, max_batch=1,
                 commit_interval=0.001)
    def explode(order: _Order, ctx: Context) -> None:
        if order.id == 1:
            own_kafka.kill_node(0)
        for n in range(lines_per_order):
            ctx.emit(None, _Line(order=order.id, n=n))

    url = f"kafka://{own_kafka.bootstrap}?millstream.timeout_ms=3000&{GROUP_OPTIONS}"
    try:
        with millstream.open_streams(url) as streams:
            admin = streams.admin()
            admin.create_stream(orders, 1)
            admin.create_stream(lines, 1)
            with streams.open_producer() as producer:
                for i in range(2):
                    value, headers = ModelCodec(_Order).encode(_Order(id=i))
                    producer.send(orders, value, key=str(i).encode(), headers=headers)
            runner = ServiceRunner(app, "explode", streams, plumbing=False)
            caplog.set_level("ERROR", logger="millstream.runtime._runner")
            t0 = time.monotonic()
            with pytest.raises(OperationTimeoutError, match="still not acknowledged"):
                runner.run()
            elapsed = time.monotonic() - t0
        stats = runner.statistics()
        assert stats.records_out == 2 * lines_per_order  # handed to the producer
        assert stats.undelivered == lines_per_order
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, errors
        assert errors[0].startswith(
            f"service explode: {lines_per_order} record(s) it sent were never delivered "
            f"(closing its KafkaProducer failed: closed with {lines_per_order} records not "
            "delivered (5 not acknowledged after 3.0 s, 0 refused)"), errors[0]
        print(f"the service failed and closed {elapsed:.1f} s after it started")
    finally:
        own_kafka.restart_node(0)
        own_kafka.wait_ready(120)


TIMEOUT_S = 2.0  # millstream.timeout_ms of the consumers below
SLACK_S = 3.0  # what a call may take beyond it


def _fails_clearly(what: str, call: Callable[[], object], bound: float,
                   kinds: tuple[type[MillstreamError], ...] = (UnavailableError,
                                                             OperationTimeoutError)
                   ) -> MillstreamError:
    """``call`` must raise a retriable millstream error of ``kinds`` that says to check the
    brokers, within ``bound`` seconds."""
    t0 = time.monotonic()
    try:
        result = call()
    except BaseException as exc:  # anything at all: a foreign type is the failure
        elapsed = time.monotonic() - t0
        assert type(exc).__module__ == "millstream.errors", \
            f"{what} let {type(exc).__module__}.{type(exc).__name__} escape: {exc!r}"
        assert isinstance(exc, kinds), f"{what} raised {exc!r}"
        assert exc.retriable, f"{what}: {exc!r} is not marked retriable"
        assert "check the brokers" in str(exc), f"{what}: {exc} does not say what to check"
        assert elapsed < bound, f"{what} took {elapsed:.1f} s to fail (bound {bound} s)"
        return exc
    raise AssertionError(f"{what} returned {result!r} with its broker dead")


def _answers(what: str, call: Callable[[], object], bound: float) -> object:
    """``call`` needs no broker: it must answer within ``bound`` seconds."""
    t0 = time.monotonic()
    result = call()
    assert time.monotonic() - t0 < bound, f"{what} took {time.monotonic() - t0:.1f} s"
    return result


def test_every_consumer_call_fails_fast_when_the_broker_dies_under_it(
        own_kafka: KafkaCluster) -> None:
    """A group member and a standalone consumer read a stream, then its only broker is
    SIGKILLed. Every call of the Consumer Protocol is tried: those that need a broker
    (``committed``, ``seek``, ``seek_to_beginning``/``_end``/``_timestamp``, ``lag``, and
    ``subscribe`` on a new consumer) raise a retriable ``UnavailableError`` or
    ``OperationTimeoutError`` saying to check the brokers within ``millstream.timeout_ms``
    plus a little — before the fix the seeks and ``lag`` raised a non-retriable
    ``NotFoundError`` ("unknown partition"). ``commit`` has no timeout of its own in
    librdkafka: it fails once the group session expires (``session.timeout.ms``, 6 s here).
    ``poll`` returns what was fetched, then empty lists, within its timeout (librdkafka
    reconnects by itself); ``assignment``, ``position`` and ``close`` answer at once; a
    standalone consumer's ``commit`` is refused and its ``committed`` is all None, as always."""
    url = f"kafka://{own_kafka.bootstrap}?millstream.timeout_ms={TIMEOUT_S * 1000:.0f}&" \
          f"{GROUP_OPTIONS}"
    stream, group = f"dies-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    bound = TIMEOUT_S + SLACK_S
    try:
        with millstream.open_streams(url) as streams:
            streams.admin().create_stream(stream, 2)
            with streams.open_producer() as producer:
                producer.send_batch(stream, [b"a", b"b", b"c"], partition=0).wait(30)
                producer.send_batch(stream, [b"d"], partition=1).wait(30)
            member, solo = streams.open_consumer(group), streams.open_consumer()
            for consumer in (member, solo):
                consumer.subscribe([stream])
                got = 0
                deadline = time.monotonic() + 60
                while got < 4:
                    assert time.monotonic() < deadline, "the records did not arrive"
                    got += len(consumer.poll(10, timeout=0.5))
            member.commit()
            sp = StreamPartition(stream, 0)
            owned = [sp, StreamPartition(stream, 1)]
            own_kafka.kill_node(0)

            def each_call(consumer: Consumer) -> None:
                assert _answers("poll", lambda: consumer.poll(10, timeout=0.5),
                                0.5 + SLACK_S) == []
                assert _answers("assignment", consumer.assignment, SLACK_S) == owned
                assert _answers("position", lambda: consumer.position(sp), SLACK_S) == 3
                _fails_clearly("seek", lambda: consumer.seek(sp, 1), bound)
                _fails_clearly("seek_to_beginning", consumer.seek_to_beginning, bound)
                _fails_clearly("seek_to_end", consumer.seek_to_end, bound)
                _fails_clearly("seek_to_timestamp", lambda: consumer.seek_to_timestamp(0),
                               bound)
                _fails_clearly("lag", consumer.lag, bound)

            # the two consumers are separate clients: tried side by side, each call timed
            with ThreadPoolExecutor(2) as pool:
                for done in [pool.submit(each_call, c) for c in (member, solo)]:
                    done.result()
            _fails_clearly("committed", member.committed, bound)
            _fails_clearly("commit", member.commit, 6.0 + bound)
            with pytest.raises(millstream.InvalidRequestError, match="no group"):
                solo.commit()
            assert _answers("committed", solo.committed, SLACK_S) == dict.fromkeys(owned)
            for consumer in (member, solo):
                _answers("close", consumer.close, SLACK_S)

            fresh = streams.open_consumer(f"g-{uuid.uuid4().hex[:8]}")
            _fails_clearly("subscribe", lambda: fresh.subscribe([stream]), bound)
            _answers("close", fresh.close, SLACK_S)
    finally:
        own_kafka.restart_node(0)
        own_kafka.wait_ready(120)
