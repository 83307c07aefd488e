"""Kafka transactions: outputs and a consumer group's offsets committed atomically.

A confluent-kafka producer with a ``transactional.id``: ``send`` opens a transaction on first
use; ``commit`` adds the group's offsets with ``send_offsets_to_transaction`` (fenced by the
consumer's group generation, KIP-447) and commits. Readers with ``isolation.level=
read_committed`` — librdkafka's default, and millstream's consumers keep it — never see the
records of an aborted transaction. A failure that requires an abort aborts, and the caller
must re-read from its last committed offsets; a fatal one (a newer instance with the same
transactional id fenced this one) raises ``FencedError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Producer as _Producer

from millstream.errors import (
    ClosedError,
    DeliveryError,
    FencedError,
    InvalidRequestError,
    MillstreamError,
    RecordTooLargeError,
)
from millstream.records import Headers, StreamPartition, record_size
from millstream.streams._base import Consumer
from millstream.streams._kafka.consumer import KafkaConsumer
from millstream.streams._kafka.errors import error_of, translate
from millstream.streams._kafka.metadata import PartitionCounts
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["KafkaTransactionalProducer"]


class KafkaTransactionalProducer:
    """See ``millstream.streams._base.TransactionalProducer``."""

    def __init__(self, options: KafkaOptions, transactional_id: str) -> None:
        if not isinstance(transactional_id, str) or not transactional_id:
            raise InvalidRequestError(
                f"transactional_id must be a non-empty string, got {transactional_id!r}")
        self.transactional_id = transactional_id
        self._timeout = options.timeout_s
        self._limit = options.max_record_bytes
        config: dict[str, Any] = dict(options.producer())
        config["transactional.id"] = transactional_id
        try:
            self._producer: Any = _Producer(config)
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise translate(exc, f"starting transactional producer {transactional_id!r}") from exc
        self._counts = PartitionCounts(self._producer, self._timeout)
        self._open = False
        self._failures: list[MillstreamError] = []
        self._closed = False

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._failures.append(error_of(err, f"producing to {msg.topic()}"))

    def _begin(self) -> None:
        if self._closed:
            raise ClosedError("this transactional producer is closed; open a new one")
        if not self._open:
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                raise self._failed(exc, "beginning a transaction") from exc
            self._open = True

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None) -> None:
        size = record_size(key, value, headers)
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        count = self._counts.get(stream)
        if partition is not None and (type(partition) is not int or
                                      not 0 <= partition < count):
            raise InvalidRequestError(
                f"partition {partition!r} is out of range for stream {stream!r}, which has "
                f"partitions 0..{count - 1}")
        if partition is None and key is None:
            raise InvalidRequestError(
                f"a transactional send to {stream!r} needs a key or a partition")
        self._begin()
        args = (stream, value, key, -1 if partition is None else partition, self._delivered)
        kwargs = {"headers": list(headers)} if headers else {}
        while True:
            try:
                self._producer.produce(*args, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise self._failed(exc, f"producing to {stream!r}") from exc

    def commit(self, consumer: Consumer, offsets: Mapping[StreamPartition, int]) -> None:
        if not isinstance(consumer, KafkaConsumer):
            raise InvalidRequestError(
                "a Kafka transaction commits offsets of a Kafka consumer, not "
                f"{type(consumer).__name__}")
        self._begin()
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(
                    [TopicPartition(sp.stream, sp.partition, off) for sp, off in offsets.items()],
                    consumer.group_metadata(), self._timeout)
            self._producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            raise self._failed(exc, "committing a transaction") from exc
        finally:
            self._open = False
        if self._failures:  # not expected after a successful commit; never hide one
            failure, self._failures = self._failures[0], []
            raise DeliveryError(f"a record of a committed transaction failed: {failure}")

    def _failed(self, exc: KafkaException, doing: str) -> MillstreamError:
        """Abort what can be aborted and say what happened."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.fatal():
            self._closed = True
            return FencedError(
                f"transactional producer {self.transactional_id!r} was fenced while {doing} "
                f"({err.str()}): another instance took over; nothing of this transaction was "
                "committed")
        if self._open:
            try:
                self._producer.abort_transaction(self._timeout)
            except KafkaException:
                self._closed = True
            self._open = False
        self._failures.clear()
        error = translate(exc, doing)
        return DeliveryError(f"{error}; the transaction was aborted and nothing of it was "
                             "committed — re-read from the last committed offsets")

    def abort(self) -> None:
        if self._open and not self._closed:
            try:
                self._producer.abort_transaction(self._timeout)
            except KafkaException as exc:
                raise translate(exc, "aborting a transaction") from exc
            finally:
                self._open = False
                self._failures.clear()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.abort()
        finally:
            self._closed = True
            self._producer.flush(self._timeout)
