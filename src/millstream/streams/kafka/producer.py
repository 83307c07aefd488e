"""The Kafka producer: confluent-kafka's producer behind millstream's ``Producer`` Protocol.

Each send registers a delivery callback that resolves its handle; a background thread serves
those callbacks (``poll``), so handles resolve without the caller's help. A full local queue
blocks the sender (serving callbacks) up to ``millstream.timeout_ms``, then raises. Records
that cannot be delivered are reported through their handle and by ``flush()``, never hidden.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
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
from millstream.streams.kafka.errors import error_of, translate
from millstream.streams.kafka.metadata import PartitionCounts
from millstream.streams.kafka.options import KafkaOptions

__all__ = ["KafkaProducer"]


class _Handle:
    """One record's acknowledgement, resolved by the delivery callback."""

    __slots__ = ("_event", "_failures", "error", "position", "stream")

    def __init__(self, stream: str, failures: list[MillstreamError]) -> None:
        self.stream = stream
        self._failures = failures
        self.position: Position | None = None
        self.error: MillstreamError | None = None
        self._event = threading.Event()

    def delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.error = error_of(err, f"producing to {self.stream!r}")
            self._failures.append(self.error)
        else:
            self.position = Position(self.stream, msg.partition(), msg.offset())
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> Position:
        if not self._event.wait(timeout):
            raise OperationTimeoutError(
                f"a record for {self.stream!r} was not acknowledged within {timeout} s; "
                "it may still be delivered — wait again or flush()"
            )
        if self.error is not None:
            raise DeliveryError(f"a record for {self.stream!r} was not stored: {self.error}") \
                from self.error
        assert self.position is not None
        return self.position


class _BatchHandle:
    __slots__ = ("_handles",)

    def __init__(self, handles: list[_Handle]) -> None:
        self._handles = handles

    def done(self) -> bool:
        return all(h.done() for h in self._handles)

    def wait(self, timeout: float | None = None) -> list[Position]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            h.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            for h in self._handles
        ]


class KafkaProducer:
    """A producer on Kafka; see ``millstream.streams.base.Producer``."""

    def __init__(self, options: KafkaOptions) -> None:
        self._options = options
        self._limit = options.max_record_bytes
        try:
            self._producer = _Producer(options.producer())
        except KafkaException as exc:
            raise translate(exc, "creating a producer") from exc
        self._counts = PartitionCounts(self._producer, options.timeout_s)
        self._lock = threading.Lock()
        self._failures: list[MillstreamError] = []
        self._closed = False
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="millstream-kafka-acks",
                                        daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _check(self, stream: str, partition: int | None) -> None:
        if self._closed:
            raise ClosedError("this producer is closed; open a new one")
        count = self._counts.get(stream)
        if partition is not None and (type(partition) is not int
                                      or not 0 <= partition < count):
            raise InvalidRequestError(
                f"partition {partition!r} is out of range for stream {stream!r}, which has "
                f"partitions 0..{count - 1}"
            )

    def _produce(self, stream: str, value: bytes | None, key: bytes | None,
                 partition: int | None, headers: Headers | None, timestamp: int | None,
                 handle: _Handle) -> None:
        kwargs: dict[str, Any] = {"on_delivery": handle.delivered}
        if key is not None:
            kwargs["key"] = key
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            try:
                self._producer.produce(stream, value, **kwargs)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"the Kafka producer's queue stayed full for {self._options.timeout_s} s "
                        "while sending: the brokers are not keeping up or are unreachable"
                    ) from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise translate(exc, f"producing to {stream!r}") from exc

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None,
             timestamp: int | None = None) -> _Handle:
        size = record_size(key, value, headers)
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        self._check(stream, partition)
        handle = _Handle(stream, self._failures)
        self._produce(stream, value, key, partition, headers, timestamp, handle)
        return handle

    def send_batch(self, stream: str, values: Sequence[bytes | None], *,
                   keys: Sequence[bytes | None] | None = None, partition: int | None = None,
                   headers: Sequence[Headers] | None = None) -> _BatchHandle:
        n = len(values)
        for name, column in (("keys", keys), ("headers", headers)):
            if column is not None and len(column) != n:
                raise InvalidRequestError(
                    f"send_batch got {n} values but {len(column)} {name}; give one per value"
                )
        for i in range(n):
            size = record_size(keys[i] if keys else None, values[i],
                               headers[i] if headers else None)
            if size > self._limit:
                raise RecordTooLargeError(size, self._limit, stream)
        self._check(stream, partition)
        handles = [_Handle(stream, self._failures) for _ in range(n)]
        for i in range(n):
            self._produce(stream, values[i], keys[i] if keys else None, partition,
                          headers[i] if headers else None, None, handles[i])
        return _BatchHandle(handles)

    def flush(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        limit = self._options.timeout_s if timeout is None else timeout
        remaining = self._producer.flush(limit)
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
                f"first: {failed[0]}"
            ) from failed[0]

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            limit = self._options.timeout_s if timeout is None else timeout
            remaining = self._producer.flush(limit)
        finally:
            self._stop.set()
            self._poller.join()
        if remaining:
            raise DeliveryError(
                f"closing with {remaining} records not acknowledged after {limit} s; they may "
                "be lost — their handles say which"
            )
        self._raise_failures()

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
