"""The Kafka producer's send handles, and the delivery callbacks that resolve them.

A ``Handle`` is one record's acknowledgement (a key's partition is librdkafka's choice); a
``Lane`` matches one thread's ``send``s to one partition to their delivery reports in the
order sent (the idempotent producer stores and reports a partition's records in that order),
a ``Sent`` being a record's place in a lane's ``Chunk``; an ``OrderedBatch`` is a keyless batch
to one partition, ``Handles`` any other batch. Each waits on its ``Target`` (the stream's
shared state) and is woken by its callback only while watched.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from millstream.errors import DeliveryError, MillstreamError, OperationTimeoutError
from millstream.records import Position
from millstream.streams._kafka.errors import error_of

__all__ = [
    "CHUNK",
    "LAST",
    "Chunk",
    "Delivered",
    "Handle",
    "Handles",
    "Lane",
    "Lanes",
    "OrderedBatch",
    "Sent",
    "Target",
    "ThreadLanes",
]


class Target:
    """What the records a producer sends to one stream share: the stream's name and
    partition count, the producer's failure list, and the handles being waited for."""

    __slots__ = ("cond", "failures", "partitions", "stream", "watched")

    def __init__(self, stream: str, partitions: int, failures: list[MillstreamError],
                 cond: threading.Condition, watched: dict[object, int]) -> None:
        self.stream = stream
        self.partitions = partitions
        self.failures = failures
        self.cond = cond
        self.watched = watched

    def wait_for(self, waiter: Any, done: Callable[[], bool], timeout: float | None) -> bool:
        """Sleep until ``done()`` (or ``timeout``), with ``waiter`` registered as watched so
        that its delivery callback wakes this thread; True if done."""
        with self.cond:
            watched = self.watched
            watched[waiter] = watched.get(waiter, 0) + 1
            self.cond.notify_all()  # the background thread serves callbacks now
            try:
                return self.cond.wait_for(done, timeout)
            finally:
                if watched[waiter] == 1:
                    del watched[waiter]
                else:
                    watched[waiter] -= 1


Delivered = Callable[[KafkaError | None, Any], None]


class Handle:
    """One record's acknowledgement. Built without ``__init__`` (the cheap path): ``_state``
    is the record's ``Target`` until the delivery callback replaces it with a plain
    ``(stream, partition, offset)`` tuple (made a ``Position`` on first use) or the
    ``MillstreamError``. Nothing else is allocated per record: a waiting thread registers the
    handle in ``watched`` and sleeps on the producer's condition; the callback wakes it only
    for a watched handle."""

    __slots__ = ("_state",)

    _state: Any

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        """The delivery callback; the handle itself is the callable given to ``produce``,
        which saves a bound-method object (one more for the garbage collector) per record."""
        target: Target = self._state
        if err is None:
            self._state = (target.stream, msg.partition(), msg.offset())
        else:
            error = error_of(err, f"producing to {target.stream!r}")
            self._state = error
            target.failures.append(error)
        watched = target.watched
        if watched and self in watched:
            with target.cond:
                target.cond.notify_all()

    def done(self) -> bool:
        return type(self._state) is not Target

    def wait(self, timeout: float | None = None) -> Position:
        state = self._state
        if type(state) is Target:
            if not state.wait_for(self, self.done, timeout):
                raise OperationTimeoutError(
                    f"a record for {state.stream!r} was not acknowledged within {timeout} s; "
                    "it may still be delivered — wait again or flush()"
                )
            state = self._state
        if type(state) is Position:
            return state
        if isinstance(state, MillstreamError):
            raise DeliveryError(f"a record was not acknowledged: {state}") from state
        position = Position(*state)
        self._state = position
        return position


class Chunk(list[Any]):
    """The results of up to ``CHUNK`` consecutive records of one lane, in the order sent:
    each an offset (``int``) or the ``MillstreamError`` of a failed record. ``next`` links
    the chunk that follows, until this one is complete."""

    __slots__ = ("lane", "next")

    def __init__(self, lane: Lane) -> None:
        super().__init__()
        self.lane = lane
        self.next: Chunk | None = None


CHUNK = 512
LAST = CHUNK - 1


class Lane:
    """The records one thread sends with ``send()`` to one partition, matched to their
    delivery reports in the order sent.

    An idempotent producer stores a partition's records in the order sent, librdkafka
    reports their delivery in that order, and the producer's callbacks are served by one
    thread at a time. So every record of a lane is produced with the same callback
    (``delivered``, made once), which appends the result to the chunk being delivered, and
    a record's handle is its chunk and its index there: librdkafka holds nothing made per
    record, and a handle the caller drops dies at once. A lane belongs to one sending thread
    (``Lanes``), so "produce, then take the next index" needs no lock. The callback checks
    that offsets rise: a report out of order fails loudly instead of misplacing records."""

    __slots__ = ("_last", "delivered", "delivering", "filled", "partition", "sending",
                 "target")

    def __init__(self, target: Target, partition: int) -> None:
        self.target = target
        self.partition = partition
        self.sending = self.delivering = Chunk(self)
        self.filled = 0  # records sent into ``sending``
        self._last = -1
        self.delivered: Delivered = self._delivered

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        chunk = self.delivering
        if err is None:
            offset = msg.offset()
            if offset > self._last:
                self._last = offset
                chunk.append(offset)
            else:
                self._fail(chunk, MillstreamError(
                    f"librdkafka reported offset {offset} of {self.target.stream}"
                    f"[{self.partition}] after {self._last}, out of the order sent, so this "
                    "producer cannot tell which record it belongs to"))
        else:
            self._fail(chunk, error_of(err, f"producing to {self.target.stream!r}"))
        if len(chunk) == CHUNK:
            self.delivering = chunk.next  # type: ignore[assignment]  # linked when sent
            chunk.next = None
        watched = self.target.watched
        if watched and self in watched:
            with self.target.cond:
                self.target.cond.notify_all()

    def _fail(self, chunk: Chunk, error: MillstreamError) -> None:
        chunk.append(error)
        self.target.failures.append(error)


class Lanes:
    """One thread's lanes to one stream: by partition, and the one keyless records go to
    (moved to another random partition every ``CHUNK`` records)."""

    __slots__ = ("by_partition", "sticky", "target")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.by_partition: list[Lane | None] = [None] * target.partitions
        self.sticky = self.lane(random.randrange(target.partitions)
                                if target.partitions > 1 else 0)

    def lane(self, partition: int) -> Lane:
        lane = self.by_partition[partition]
        if lane is None:
            lane = self.by_partition[partition] = Lane(self.target, partition)
        return lane

    def move_sticky(self) -> None:
        if self.target.partitions > 1:
            self.sticky = self.lane(random.randrange(self.target.partitions))


class ThreadLanes(threading.local):
    """Each sending thread's ``Lanes``, by stream."""

    def __init__(self) -> None:
        self.of: dict[str, Lanes] = {}


class Sent:
    """The handle of a record sent through a lane: its chunk and its index there."""

    __slots__ = ("_chunk", "_index")

    _chunk: Chunk
    _index: int

    def done(self) -> bool:
        return len(self._chunk) > self._index

    def wait(self, timeout: float | None = None) -> Position:
        chunk, index = self._chunk, self._index
        lane = chunk.lane
        if len(chunk) <= index and not lane.target.wait_for(lane, self.done, timeout):
            raise OperationTimeoutError(
                f"a record for {lane.target.stream!r} was not acknowledged within {timeout} s; "
                "it may still be delivered — wait again or flush()"
            )
        result = chunk[index]
        if type(result) is int:
            return Position(lane.target.stream, lane.partition, result)
        raise DeliveryError(f"a record was not acknowledged: {result}") from result


class OrderedBatch:
    """The acknowledgement of a keyless batch sent to one partition by an idempotent producer.

    Such a producer stores one partition's records in the order sent, so the batch's offsets,
    sorted, are its records' offsets in order: one shared delivery callback (a bound method
    made once per batch) collects them, and nothing is allocated per record. Used only with
    ``enable.idempotence=true`` (the default); otherwise every record gets a ``Handle``."""

    __slots__ = ("_errors", "_n", "_offsets", "_partition", "_positions", "_target",
                 "delivered")

    def __init__(self, target: Target, partition: int, n: int) -> None:
        self._target = target
        self._partition = partition
        self._n = n
        self._offsets: list[int] = []
        self._errors: list[MillstreamError] = []
        self._positions: list[Position] | None = None
        self.delivered: Delivered = self._delivered

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._offsets.append(msg.offset())
        else:
            target = self._target
            error = error_of(err, f"producing to {target.stream!r}")
            self._errors.append(error)
            target.failures.append(error)
        watched = self._target.watched
        if watched and self in watched and self.done():
            with self._target.cond:
                self._target.cond.notify_all()

    def done(self) -> bool:
        return len(self._offsets) + len(self._errors) >= self._n

    def wait(self, timeout: float | None = None) -> list[Position]:
        target = self._target
        if not self.done() and not target.wait_for(self, self.done, timeout):
            raise OperationTimeoutError(
                f"{self._n - len(self._offsets) - len(self._errors)} of a batch's {self._n} "
                f"records for {target.stream!r} were not acknowledged within {timeout} s; "
                "they may still be delivered — wait again or flush()"
            )
        if self._errors:
            first = self._errors[0]
            raise DeliveryError(
                f"{len(self._errors)} of a batch's {self._n} records were not acknowledged: "
                f"{first}") from first
        if self._positions is None:
            stream, partition = target.stream, self._partition
            self._positions = [Position(stream, partition, offset)
                               for offset in sorted(self._offsets)]
        return list(self._positions)


class Handles:
    __slots__ = ("_handles",)

    def __init__(self, handles: list[Handle]) -> None:
        self._handles = handles

    def done(self) -> bool:
        return all(type(h._state) is not Target for h in self._handles)

    def wait(self, timeout: float | None = None) -> list[Position]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            h.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            for h in self._handles
        ]
