"""The Kafka producer: confluent-kafka's producer behind millstream's ``Producer`` Protocol.

Each send registers a delivery callback that resolves its handle: with the idempotent producer
(the default) one callback shared by one thread's ``send``s to one partition, when the
partition is given or there is no key (``_Lane``), or by a keyless batch (``_OrderedBatch``);
otherwise one per record (``_Handle``: a key's partition is librdkafka's choice). A sending
thread serves those callbacks itself (``poll(0)`` after every batch and every 512 or 1,000
``send``s, as a direct user of confluent-kafka would); a background thread serves them
whenever no sender has for ``_IDLE_S`` and at once while a handle is waited on, so handles
resolve without the caller's help. Only one thread serves at a time (``_serving``): two would
take turns on the GIL for every callback, and run callbacks out of the order reported.
A full local queue blocks the sender (serving callbacks) up to ``millstream.timeout_ms``, then
raises. Records that cannot be delivered are reported through their handle and by
``flush()``, never hidden.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _Producer

from millstream.errors import (
    ClosedError,
    DeliveryError,
    InvalidRequestError,
    MillstreamError,
    OperationTimeoutError,
    RecordTooLargeError,
)
from millstream.records import Headers, Position, record_size
from millstream.streams._kafka.errors import error_of, translate
from millstream.streams._kafka.metadata import PartitionCounts
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["KafkaProducer"]

_IDLE_S = 0.02  # the background thread serves callbacks once senders have not for this long
_SERVE_EVERY = 1000  # send() serves callbacks every this many records


class _Target:
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


_Delivered = Callable[[KafkaError | None, Any], None]


class _Handle:
    """One record's acknowledgement. Built without ``__init__`` (the cheap path): ``_state``
    is the record's ``_Target`` until the delivery callback replaces it with a plain
    ``(stream, partition, offset)`` tuple (made a ``Position`` on first use) or the
    ``MillstreamError``. Nothing else is allocated per record: a waiting thread registers the
    handle in ``watched`` and sleeps on the producer's condition; the callback wakes it only
    for a watched handle."""

    __slots__ = ("_state",)

    _state: Any

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        """The delivery callback; the handle itself is the callable given to ``produce``,
        which saves a bound-method object (one more for the garbage collector) per record."""
        target: _Target = self._state
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
        return type(self._state) is not _Target

    def wait(self, timeout: float | None = None) -> Position:
        state = self._state
        if type(state) is _Target:
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


class _Chunk(list[Any]):
    """The results of up to ``_CHUNK`` consecutive records of one lane, in the order sent:
    each an offset (``int``) or the ``MillstreamError`` of a failed record. ``next`` links
    the chunk that follows, until this one is complete."""

    __slots__ = ("lane", "next")

    def __init__(self, lane: _Lane) -> None:
        super().__init__()
        self.lane = lane
        self.next: _Chunk | None = None


_CHUNK = 512
_LAST = _CHUNK - 1


class _Lane:
    """The records one thread sends with ``send()`` to one partition, matched to their
    delivery reports in the order sent.

    An idempotent producer stores a partition's records in the order sent, librdkafka
    reports their delivery in that order, and the producer's callbacks are served by one
    thread at a time. So every record of a lane is produced with the same callback
    (``delivered``, made once), which appends the result to the chunk being delivered, and
    a record's handle is its chunk and its index there: librdkafka holds nothing made per
    record, and a handle the caller drops dies at once. A lane belongs to one sending thread
    (``_Lanes``), so "produce, then take the next index" needs no lock. The callback checks
    that offsets rise: a report out of order fails loudly instead of misplacing records."""

    __slots__ = ("_last", "delivered", "delivering", "filled", "partition", "sending",
                 "target")

    def __init__(self, target: _Target, partition: int) -> None:
        self.target = target
        self.partition = partition
        self.sending = self.delivering = _Chunk(self)
        self.filled = 0  # records sent into ``sending``
        self._last = -1
        self.delivered: _Delivered = self._delivered

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
        if len(chunk) == _CHUNK:
            self.delivering = chunk.next  # type: ignore[assignment]  # linked when sent
            chunk.next = None
        watched = self.target.watched
        if watched and self in watched:
            with self.target.cond:
                self.target.cond.notify_all()

    def _fail(self, chunk: _Chunk, error: MillstreamError) -> None:
        chunk.append(error)
        self.target.failures.append(error)


class _Lanes:
    """One thread's lanes to one stream: by partition, and the one keyless records go to
    (moved to another random partition every ``_CHUNK`` records)."""

    __slots__ = ("by_partition", "sticky", "target")

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.by_partition: list[_Lane | None] = [None] * target.partitions
        self.sticky = self.lane(random.randrange(target.partitions)
                                if target.partitions > 1 else 0)

    def lane(self, partition: int) -> _Lane:
        lane = self.by_partition[partition]
        if lane is None:
            lane = self.by_partition[partition] = _Lane(self.target, partition)
        return lane

    def move_sticky(self) -> None:
        if self.target.partitions > 1:
            self.sticky = self.lane(random.randrange(self.target.partitions))


class _ThreadLanes(threading.local):
    """Each sending thread's ``_Lanes``, by stream."""

    def __init__(self) -> None:
        self.of: dict[str, _Lanes] = {}


class _Sent:
    """The handle of a record sent through a lane: its chunk and its index there."""

    __slots__ = ("_chunk", "_index")

    _chunk: _Chunk
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


class _OrderedBatch:
    """The acknowledgement of a keyless batch sent to one partition by an idempotent producer.

    Such a producer stores one partition's records in the order sent, so the batch's offsets,
    sorted, are its records' offsets in order: one shared delivery callback (a bound method
    made once per batch) collects them, and nothing is allocated per record. Used only with
    ``enable.idempotence=true`` (the default); otherwise every record gets a ``_Handle``."""

    __slots__ = ("_errors", "_n", "_offsets", "_partition", "_positions", "_target",
                 "delivered")

    def __init__(self, target: _Target, partition: int, n: int) -> None:
        self._target = target
        self._partition = partition
        self._n = n
        self._offsets: list[int] = []
        self._errors: list[MillstreamError] = []
        self._positions: list[Position] | None = None
        self.delivered: _Delivered = self._delivered

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


class _BatchHandle:
    __slots__ = ("_handles",)

    def __init__(self, handles: list[_Handle]) -> None:
        self._handles = handles

    def done(self) -> bool:
        return all(type(h._state) is not _Target for h in self._handles)

    def wait(self, timeout: float | None = None) -> list[Position]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            h.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            for h in self._handles
        ]


class KafkaProducer:
    """A producer on Kafka; see ``millstream.streams._base.Producer``."""

    def __init__(self, options: KafkaOptions) -> None:
        self._options = options
        self._limit = options.max_record_bytes
        config = options.producer()
        # an idempotent producer keeps each partition's records in the order sent
        self._ordered = str(config.get("enable.idempotence", "")).lower() == "true"
        try:
            self._producer = _Producer(config)
        except KafkaException as exc:
            raise translate(exc, "creating a producer") from exc
        self._produce_now = self._producer.produce
        self._counts = PartitionCounts(self._producer, options.timeout_s)
        self._lock = threading.Lock()
        self._failures: list[MillstreamError] = []
        self._acked = threading.Condition()
        # Callbacks are served by one thread at a time, so they run in the order librdkafka
        # reports deliveries (lanes depend on it): whoever polls or flushes holds _serving.
        # _wanted counts threads that must serve (flush, a full queue); the background
        # thread stays out of their way.
        self._serving = threading.Lock()
        self._wanted = 0
        self._watched: dict[object, int] = {}
        self._targets: dict[str, _Target] = {}
        self._lanes = _ThreadLanes()
        self._sends = 0  # send() calls since callbacks were last served in a sending thread
        self._served = 0.0  # when they were (time.monotonic())
        self._closed = False
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="millstream-kafka-acks",
                                        daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        """The background thread: serve callbacks while a handle is waited on or when no
        sender has served them for ``_IDLE_S``; otherwise stay out of the senders' way."""
        while not self._stop.is_set():
            quiet = time.monotonic() - self._served
            if not self._wanted and (self._watched or quiet >= _IDLE_S):
                with self._serving:
                    self._producer.poll(0.05)
                continue
            with self._acked:
                if self._stop.is_set():
                    break
                if self._wanted:
                    self._acked.wait(_IDLE_S)
                elif not self._watched:
                    self._acked.wait(_IDLE_S - quiet)

    def _serve_here(self) -> None:
        """Serve the callbacks that are ready in the sending thread, unless another thread
        is serving them (never blocks)."""
        self._sends = 0
        self._served = time.monotonic()
        if self._serving.acquire(blocking=False):
            try:
                self._producer.poll(0)
            finally:
                self._serving.release()

    def _serve_now(self, serve: Callable[[float], int], timeout: float) -> int:
        """``serve(timeout)`` (``poll`` or ``flush``) in this thread, once no other thread
        is serving callbacks; the background thread waits meanwhile."""
        with self._acked:
            self._wanted += 1
        try:
            with self._serving:
                self._served = time.monotonic()
                return serve(timeout)
        finally:
            with self._acked:
                self._wanted -= 1
                self._acked.notify_all()

    def _next_chunk(self, lane: _Lane, lanes: _Lanes) -> None:
        """After a lane's chunk filled up: start the next, move keyless records to another
        partition, serve callbacks."""
        lane.sending.next = lane.sending = _Chunk(lane)
        lane.filled = 0
        lanes.move_sticky()
        self._serve_here()

    def _flush(self, timeout: float) -> int:
        """librdkafka's flush, served in this thread; at once when nothing is outstanding
        (``len()``: records queued or in flight, and reports not yet served)."""
        return self._serve_now(self._producer.flush, timeout) if len(self._producer) else 0

    def _check(self, stream: str, partition: int | None) -> _Target:
        if self._closed:
            raise ClosedError("this producer is closed; open a new one")
        target = self._targets.get(stream)
        if target is None:
            count = self._counts.get(stream)
            target = _Target(stream, count, self._failures, self._acked, self._watched)
            self._targets[stream] = target
        if partition is not None and (type(partition) is not int
                                      or not 0 <= partition < target.partitions):
            raise InvalidRequestError(
                f"partition {partition!r} is out of range for stream {stream!r}, which has "
                f"partitions 0..{target.partitions - 1}"
            )
        return target

    def _produce(self, stream: str, value: bytes | None, key: bytes | None,
                 partition: int, headers: Headers | None, timestamp: int | None,
                 handle: _Delivered) -> None:
        """One ``produce`` with the full options; waits (serving callbacks) while the local
        queue is full. The hot paths call ``produce`` themselves and come here on
        ``BufferError`` or when headers or a timestamp are given."""
        kwargs: dict[str, Any] = {}
        if headers:
            kwargs["headers"] = list(headers)
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            try:
                self._producer.produce(stream, value, key, partition, handle, **kwargs)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"the Kafka producer's queue stayed full for {self._options.timeout_s} s "
                        "while sending: the brokers are not keeping up or are unreachable"
                    ) from None
                self._serve_now(self._producer.poll, 0.05)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None,
             timestamp: int | None = None) -> _Sent | _Handle:
        lanes = self._lanes.of.get(stream)  # only with idempotence; see _Lane
        if (lanes is not None and key is None and partition is None and not headers
                and timestamp is None and value is not None and len(value) <= self._limit
                and not self._closed):  # the hot path: a keyless record to the sticky lane
            lane = lanes.sticky
            try:
                self._produce_now(stream, value, None, lane.partition, lane.delivered)
            except BufferError:
                self._produce(stream, value, None, lane.partition, None, None, lane.delivered)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc
            sent = _Sent()
            sent._chunk = lane.sending
            sent._index = index = lane.filled
            if index < _LAST:
                lane.filled = index + 1
            else:
                self._next_chunk(lane, lanes)
            return sent
        if key is None and value is not None and not headers:
            size = len(value)
        else:
            size = record_size(key, value, headers)
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        if self._ordered and (key is None or partition is not None):
            checked = self._check(stream, partition)
            if lanes is None:
                lanes = self._lanes.of[stream] = _Lanes(checked)
            lane = lanes.sticky if partition is None else lanes.lane(partition)
            try:
                if headers or timestamp is not None:
                    self._produce(stream, value, key, lane.partition, headers, timestamp,
                                  lane.delivered)
                else:
                    self._produce_now(stream, value, key, lane.partition, lane.delivered)
            except BufferError:
                self._produce(stream, value, key, lane.partition, None, None, lane.delivered)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc
            sent = _Sent()
            sent._chunk = lane.sending
            sent._index = index = lane.filled
            if index < _LAST:
                lane.filled = index + 1
            else:
                self._next_chunk(lane, lanes)
            return sent
        target = self._targets.get(stream)
        if target is None or partition is not None or self._closed:
            target = self._check(stream, partition)
        handle = _Handle()
        handle._state = target
        part = -1 if partition is None else partition  # -1: librdkafka's partitioner decides
        try:
            if headers or timestamp is not None:
                self._produce(stream, value, key, part, headers, timestamp, handle)
            else:
                self._producer.produce(stream, value, key, part, handle)
        except BufferError:
            self._produce(stream, value, key, part, None, None, handle)
        except KafkaException as exc:
            raise translate(exc, f"producing to {stream!r}") from exc
        self._sends += 1
        if self._sends >= _SERVE_EVERY:
            self._serve_here()
        return handle

    def send_batch(self, stream: str, values: Sequence[bytes | None], *,
                   keys: Sequence[bytes | None] | None = None, partition: int | None = None,
                   headers: Sequence[Headers] | None = None) -> _BatchHandle | _OrderedBatch:
        n = len(values)
        for name, column in (("keys", keys), ("headers", headers)):
            if column is not None and len(column) != n:
                raise InvalidRequestError(
                    f"send_batch got {n} values but {len(column)} {name}; give one per value"
                )
        limit = self._limit
        if keys is None and headers is None:  # one pass in C; sizes only if one is too big
            too_big = max(map(len, filter(None, values)), default=0) > limit
        else:
            too_big = True
        if too_big:
            for i in range(n):
                size = record_size(keys[i] if keys else None, values[i],
                                   headers[i] if headers else None)
                if size > limit:
                    raise RecordTooLargeError(size, limit, stream)
        target = self._check(stream, partition)
        produce = self._producer.produce
        if keys is None and self._ordered:  # one partition, one callback for the batch
            if partition is None:  # keyless records spread over partitions in batches
                partition = random.randrange(target.partitions) if target.partitions > 1 else 0
            batch = _OrderedBatch(target, partition, n)
            delivered = batch.delivered
            try:
                if headers is None:
                    for value in values:
                        try:
                            produce(stream, value, None, partition, delivered)
                        except BufferError:
                            self._produce(stream, value, None, partition, None, None, delivered)
                else:
                    for value, header in zip(values, headers, strict=True):
                        self._produce(stream, value, None, partition, header, None, delivered)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc
            self._serve_here()
            return batch
        part = -1 if partition is None else partition  # -1: librdkafka's partitioner decides
        handles: list[_Handle] = []
        append = handles.append
        try:
            if keys is None and headers is None:
                for value in values:
                    handle = _Handle()
                    handle._state = target
                    append(handle)
                    try:
                        produce(stream, value, None, part, handle)
                    except BufferError:
                        self._produce(stream, value, None, part, None, None, handle)
            else:
                for i in range(n):
                    handle = _Handle()
                    handle._state = target
                    append(handle)
                    self._produce(stream, values[i], keys[i] if keys else None, part,
                                  headers[i] if headers else None, None, handle)
        except KafkaException as exc:
            raise translate(exc, f"producing to {stream!r}") from exc
        self._serve_here()
        return _BatchHandle(handles)

    def flush(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        limit = self._options.timeout_s if timeout is None else timeout
        remaining = self._flush(limit)
        if remaining:
            raise OperationTimeoutError(
                f"{remaining} records were still not acknowledged after {limit} s; "
                "the brokers may be down — flush again, or check them"
            )
        self._raise_failures()

    def _raise_failures(self) -> None:
        n = len(self._failures)  # callbacks only append, so the first n are stable
        failed = self._failures[:n]
        del self._failures[:n]
        if failed:
            raise DeliveryError(
                f"{len(failed)} records could not be stored (their handles say which); "
                f"first: {failed[0]}", undelivered=len(failed),
            ) from failed[0]

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            limit = self._options.timeout_s if timeout is None else timeout
            remaining = self._flush(limit)
        finally:
            self._stop.set()
            with self._acked:
                self._acked.notify_all()
            self._poller.join()
        if remaining:
            failed = len(self._failures)
            raise DeliveryError(
                f"closed with {remaining + failed} records not delivered ({remaining} not "
                f"acknowledged after {limit} s, {failed} refused); they are lost unless sent "
                "again — their handles say which", undelivered=remaining + failed,
            )
        self._raise_failures()

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
