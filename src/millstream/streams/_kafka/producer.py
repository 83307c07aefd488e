"""The Kafka producer: confluent-kafka's producer behind millstream's ``Producer`` Protocol.

Each send registers a delivery callback that resolves its handle: with the idempotent producer
(the default) one callback shared by one thread's ``send``s to one partition, when the
partition is given or there is no key (``Lane``), or by a keyless batch (``OrderedBatch``);
otherwise one per record (``Handle``: a key's partition is librdkafka's choice). A sending
thread serves those callbacks itself (``poll(0)`` after every batch and every 512 or 1,000
``send``s, as a direct user of confluent-kafka would); a background thread serves them
whenever no sender has for ``_IDLE_S`` and at once while a handle is waited on, so handles
resolve without the caller's help. Only one thread serves at a time (``_serving``): two would
take turns on the GIL for every callback, and run callbacks out of the order reported.
A full local queue blocks the sender (serving callbacks) up to ``millstream.timeout_ms``, then
raises. Records that cannot be delivered are reported through their handle and by
``flush()``, never hidden. The handles and their callbacks are ``handles``.

``write`` and ``write_batch`` queue records with no handle: every written record shares one
delivery callback (``_written``, made once) that only records failures, so a write costs one
``produce()`` call, and the next ``flush()`` (which waits until every report is served)
raises for them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka import Producer as _Producer

from millstream.errors import (
    ClosedError,
    DeliveryError,
    InvalidRequestError,
    OperationTimeoutError,
    RecordTooLargeError,
)
from millstream.records import Headers, record_size
from millstream.streams._checks import check_batch
from millstream.streams._kafka._failures import Failures
from millstream.streams._kafka.errors import translate
from millstream.streams._kafka.handles import (
    LAST,
    Chunk,
    Delivered,
    Handle,
    Handles,
    Lane,
    Lanes,
    OrderedBatch,
    Sent,
    Target,
    ThreadLanes,
)
from millstream.streams._kafka.metadata import PartitionCounts
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["KafkaProducer"]

_IDLE_S = 0.02  # the background thread serves callbacks once senders have not for this long
_SERVE_EVERY = 1000  # send() serves callbacks every this many records


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
        self._acked = threading.Condition()
        # Callbacks are served by one thread at a time, so they run in the order librdkafka
        # reports deliveries (lanes depend on it): whoever polls or flushes holds _serving.
        # _wanted counts threads that must serve (flush, a full queue); the background
        # thread stays out of their way.
        self._serving = threading.Lock()
        self._failed = Failures(self._serving)  # every record's failure, told to each flush
        self._wanted = 0
        self._watched: dict[object, int] = {}
        self._targets: dict[str, Target] = {}
        self._writable: set[str] = set()  # streams write() has checked (emptied by close)
        self._written: Delivered = self._failed.written
        #: write()'s last headers: the tuple, its size, and the list produce() takes
        self._headers: tuple[Headers | None, int, list[Any]] = (None, 0, [])
        self._lanes = ThreadLanes()
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

    def _next_chunk(self, lane: Lane, lanes: Lanes) -> None:
        """After a lane's chunk filled up: start the next, move keyless records to another
        partition, serve callbacks."""
        lane.sending.next = lane.sending = Chunk(lane)
        lane.filled = 0
        lanes.move_sticky()
        self._serve_here()

    def _flush(self, timeout: float) -> int:
        """librdkafka's flush, served in this thread; at once when nothing is outstanding
        (``len()``: records queued or in flight, and reports not yet served) and no other
        thread is serving callbacks (one in progress may still be recording a failure)."""
        if self._serving.acquire(blocking=False):
            try:
                if not len(self._producer):
                    return 0
            finally:
                self._serving.release()
        return self._serve_now(self._producer.flush, timeout)

    def _check(self, stream: str, partition: int | None) -> Target:
        if self._closed:
            raise ClosedError("this producer is closed; open a new one")
        target = self._targets.get(stream)
        if target is None:
            count = self._counts.get(stream)
            target = Target(stream, count, self._failed.items, self._acked, self._watched)
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
                 handle: Delivered) -> None:
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
             timestamp: int | None = None) -> Sent | Handle:
        lanes = self._lanes.of.get(stream)  # only with idempotence; see Lane
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
            sent = Sent()
            sent._chunk = lane.sending
            sent._index = index = lane.filled
            if index < LAST:
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
                lanes = self._lanes.of[stream] = Lanes(checked)
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
            sent = Sent()
            sent._chunk = lane.sending
            sent._index = index = lane.filled
            if index < LAST:
                lane.filled = index + 1
            else:
                self._next_chunk(lane, lanes)
            return sent
        target = self._targets.get(stream)
        if target is None or partition is not None or self._closed:
            target = self._check(stream, partition)
        handle = Handle()
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
                   headers: Sequence[Headers] | None = None) -> Handles | OrderedBatch:
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
            batch = OrderedBatch(target, partition, n)
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
        handles: list[Handle] = []
        append = handles.append
        try:
            if keys is None and headers is None:
                for value in values:
                    handle = Handle()
                    handle._state = target
                    append(handle)
                    try:
                        produce(stream, value, None, part, handle)
                    except BufferError:
                        self._produce(stream, value, None, part, None, None, handle)
            else:
                for i in range(n):
                    handle = Handle()
                    handle._state = target
                    append(handle)
                    self._produce(stream, values[i], keys[i] if keys else None, part,
                                  headers[i] if headers else None, None, handle)
        except KafkaException as exc:
            raise translate(exc, f"producing to {stream!r}") from exc
        self._serve_here()
        return Handles(handles)

    def write(self, stream: str, value: bytes | None, *, key: bytes | None = None,
              partition: int | None = None, headers: Headers | None = None,
              timestamp: int | None = None) -> None:
        if (value is not None and partition is None and timestamp is None
                and stream in self._writable):  # the hot path: librdkafka's partitioner
            size = len(value) if key is None else len(value) + len(key)
            if headers:  # a service's outputs share one headers tuple: sized once
                cache = self._headers
                if cache[0] is not headers:
                    if type(headers) is not tuple:  # a list may change before the next call
                        headers = tuple(headers)
                    cache = self._headers = (headers, record_size(None, None, headers),
                                             list(headers))
                size += cache[1]
            if size > self._limit:
                raise RecordTooLargeError(size, self._limit, stream)
            try:
                if headers:
                    self._produce_now(stream, value, key, -1, self._written, None, 0, cache[2])
                else:
                    self._produce_now(stream, value, key, -1, self._written)
            except BufferError:
                self._produce(stream, value, key, -1, headers, None, self._written)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc
        else:
            size = record_size(key, value, headers)
            if size > self._limit:
                raise RecordTooLargeError(size, self._limit, stream)
            self._check(stream, partition)
            self._produce(stream, value, key, -1 if partition is None else partition, headers,
                          timestamp, self._written)
            if not self._closed:
                self._writable.add(stream)
        self._sends += 1
        if self._sends >= _SERVE_EVERY:
            self._serve_here()

    def write_batch(self, stream: str, values: Sequence[bytes | None], *,
                    keys: Sequence[bytes | None] | None = None, partition: int | None = None,
                    headers: Sequence[Headers] | None = None) -> None:
        # all or none, at the call; values alone are sized in one pass in C
        if keys is not None or headers is not None \
                or max(map(len, filter(None, values)), default=0) > self._limit:
            check_batch(stream, values, keys, headers, self._limit)
        self._check(stream, partition)
        part = -1 if partition is None else partition  # -1: librdkafka's partitioner decides
        produce, written = self._producer.produce, self._written
        try:
            if keys is None and headers is None:  # the common batch: values only
                for value in values:
                    try:
                        produce(stream, value, None, part, written)
                    except BufferError:
                        self._produce(stream, value, None, part, None, None, written)
            else:
                self._write_each(stream, values, keys, part, headers)
        except KafkaException as exc:
            raise translate(exc, f"producing to {stream!r}") from exc
        if not self._closed:
            self._writable.add(stream)
        self._serve_here()

    def _write_each(self, stream: str, values: Sequence[bytes | None],
                    keys: Sequence[bytes | None] | None, part: int,
                    headers: Sequence[Headers] | None) -> None:
        """``write_batch``'s records with keys or headers, each by position; a headers tuple
        shared by consecutive records is listed once."""
        produce, written = self._producer.produce, self._written
        listed: tuple[Headers | None, list[Any]] = (None, [])
        for i, value in enumerate(values):
            key = keys[i] if keys is not None else None
            record_headers = headers[i] if headers is not None else None
            try:
                if record_headers:
                    if listed[0] is not record_headers:
                        listed = (record_headers, list(record_headers))
                    produce(stream, value, key, part, written, None, 0, listed[1])
                else:
                    produce(stream, value, key, part, written)
            except BufferError:
                self._produce(stream, value, key, part, record_headers, None, written)

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
        self._failed.raise_untold()

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writable.clear()
        try:
            limit = self._options.timeout_s if timeout is None else timeout
            remaining = self._flush(limit)
        finally:
            self._stop.set()
            with self._acked:
                self._acked.notify_all()
            self._poller.join()
        if remaining:
            failed, _ = self._failed.untold()
            raise DeliveryError(
                f"closed with {remaining + failed} records not delivered ({remaining} not "
                f"acknowledged after {limit} s, {failed} refused); they are lost unless sent "
                "again — their handles say which", undelivered=remaining + failed,
            )
        self._failed.raise_untold()

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
