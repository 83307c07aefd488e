"""The claim-check: values too large for a stream travel through the file store instead.

``ClaimCheck.wrap_producer`` stores every value larger than ``threshold_bytes`` (on the
chosen streams, or all) as ``claim-check/<sha256>`` and sends its ``FileRef`` JSON in its
place, with the header ``millstream-claim-check: 1``. The name comes from the content, so a
resend stores nothing new. ``wrap_consumer`` turns such records back into the original value
(read in full and verified against the reference's SHA-256) and drops the header; other
records pass untouched. ``claim_checked(streams, claim)`` wraps every producer and consumer a
``Streams`` opens. Objects are never deleted here: ``millstream files gc`` does that.

Each wrapped producer pins (``_pins``) the objects it checks in before storing or reusing
them, and drops the pins once its records are durable (``flush``, ``close``, a transaction's
commit or abort): a gc running meanwhile never deletes an object a record is about to refer
to, even an old one whose content is sent again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from millstream.errors import CorruptDataError
from millstream.files._base import FileRef, FileStore
from millstream.files._pins import Pins
from millstream.records import Headers, Record, StreamPartition
from millstream.streams._base import (
    Admin,
    BatchHandle,
    Consumer,
    OffsetReset,
    Producer,
    RebalanceCallback,
    RecordBatch,
    SendHandle,
    Streams,
    SupportsTransactions,
    TransactionalProducer,
)
from millstream.streams._batch import RecordList

__all__ = ["HEADER", "ClaimCheck", "claim_checked"]

HEADER = "millstream-claim-check"
PREFIX = "claim-check/"
#: Below Kafka's and the embedded log's 1 MiB default limit, with room for key and headers.
DEFAULT_THRESHOLD = 512 * 1024


class ClaimCheck:
    """Which values go to the file store: larger than ``threshold_bytes``, on ``streams``
    (None: every stream)."""

    def __init__(self, store: FileStore, *, threshold_bytes: int = DEFAULT_THRESHOLD,
                 streams: set[str] | None = None) -> None:
        self.store = store
        self.threshold_bytes = threshold_bytes
        self.streams = frozenset(streams) if streams is not None else None

    def applies(self, stream: str, value: bytes | None) -> bool:
        return (value is not None and len(value) > self.threshold_bytes
                and (self.streams is None or stream in self.streams))

    @staticmethod
    def name_of(value: bytes) -> str:
        """The object a value is checked in as."""
        return PREFIX + hashlib.sha256(value).hexdigest()

    def check_in(self, value: bytes, pins: Pins | None = None) -> bytes:
        """Store ``value`` (once per content) and return the reference to send instead;
        ``pins`` holds the object until the caller's record is durable (the caller must have
        held it already when ``pins`` is None and a gc may run)."""
        name = self.name_of(value)
        if pins is not None:
            pins.hold(name, sent=True)  # before looking: a gc may be deleting the object
        try:
            ref = self.store.stat(name)
            if ref.size != len(value):
                raise LookupError
            # reused only if intact: on file:// a 1-byte range read checks the whole object
            # (one stat once its check is recorded); S3 objects do not change in place
            with self.store.open(ref, start=0, end=1) as f:
                f.read()
        except (LookupError, CorruptDataError):  # missing, damaged, or a file without record
            ref = self.store.put(name, value, content_type="application/octet-stream")
        return ref.model_dump_json().encode()

    def check_out(self, record: Record) -> Record:
        """The record with its value fetched back, if it carries a claim-check reference."""
        headers = record.headers
        if not headers or not any(h[0] == HEADER for h in headers):
            return record
        ref = FileRef.model_validate_json(record.value or b"")
        value = self.store.read_bytes(ref)
        return record._replace(value=value,
                               headers=tuple(h for h in headers if h[0] != HEADER))

    def outgoing(self, stream: str, value: bytes | None, headers: Headers | None,
                 pins: Pins | None = None) -> tuple[bytes | None, Headers | None]:
        if not self.applies(stream, value):
            return value, headers
        assert value is not None
        return self.check_in(value, pins), (*(headers or ()), (HEADER, b"1"))

    def hold(self, stream: str, values: Iterable[bytes | None], pins: Pins) -> list[Any]:
        """Pin the objects ``values`` will be checked in as (one pin for them all); the
        ticket for ``pins.sent`` once their records are handed to the producer."""
        names = [self.name_of(v) for v in values if v is not None and self.applies(stream, v)]
        return pins.hold(names) if names else []

    def wrap_producer(self, producer: Producer) -> Producer:
        return _Producer(producer, self)

    def wrap_consumer(self, consumer: Consumer) -> Consumer:
        return _Consumer(consumer, self)


class _Producer:
    def __init__(self, inner: Producer, claim: ClaimCheck) -> None:
        self._inner = inner
        self._claim = claim
        self._pins = Pins(claim.store)

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None,
             timestamp: int | None = None) -> SendHandle:
        ticket = self._claim.hold(stream, (value,), self._pins)
        try:  # the pin may go with a flush only once the record is handed to the producer
            value, headers = self._claim.outgoing(stream, value, headers)
            return self._inner.send(stream, value, key=key, partition=partition,
                                    headers=headers, timestamp=timestamp)
        finally:
            self._pins.sent(ticket)

    def send_batch(self, stream: str, values: Sequence[bytes | None], *,
                   keys: Sequence[bytes | None] | None = None, partition: int | None = None,
                   headers: Sequence[Headers] | None = None) -> BatchHandle:
        if not any(self._claim.applies(stream, v) for v in values):
            return self._inner.send_batch(stream, values, keys=keys, partition=partition,
                                          headers=headers)
        ticket = self._claim.hold(stream, values, self._pins)  # one pin for the batch
        try:
            pairs = [self._claim.outgoing(stream, v, headers[i] if headers else None)
                     for i, v in enumerate(values)]
            return self._inner.send_batch(stream, [p[0] for p in pairs], keys=keys,
                                          partition=partition,
                                          headers=[p[1] or () for p in pairs])
        finally:
            self._pins.sent(ticket)

    def write(self, stream: str, value: bytes | None, *, key: bytes | None = None,
              partition: int | None = None, headers: Headers | None = None,
              timestamp: int | None = None) -> None:
        if not self._claim.applies(stream, value):
            self._inner.write(stream, value, key=key, partition=partition, headers=headers,
                              timestamp=timestamp)
            return
        ticket = self._claim.hold(stream, (value,), self._pins)
        try:  # as in send: the pin may go with a flush once the record is handed over
            value, headers = self._claim.outgoing(stream, value, headers)
            self._inner.write(stream, value, key=key, partition=partition, headers=headers,
                              timestamp=timestamp)
        finally:
            self._pins.sent(ticket)

    def write_batch(self, stream: str, values: Sequence[bytes | None], *,
                    keys: Sequence[bytes | None] | None = None, partition: int | None = None,
                    headers: Sequence[Headers] | None = None) -> None:
        if not any(self._claim.applies(stream, v) for v in values):
            self._inner.write_batch(stream, values, keys=keys, partition=partition,
                                    headers=headers)
            return
        ticket = self._claim.hold(stream, values, self._pins)  # as in send_batch
        try:
            pairs = [self._claim.outgoing(stream, v, headers[i] if headers else None)
                     for i, v in enumerate(values)]
            self._inner.write_batch(stream, [p[0] for p in pairs], keys=keys,
                                    partition=partition, headers=[p[1] or () for p in pairs])
        finally:
            self._pins.sent(ticket)

    def flush(self, timeout: float | None = None) -> None:
        mark = self._pins.mark()  # only what was handed over before the flush began
        self._inner.flush(timeout)
        self._pins.release(mark)  # those records are durable; other threads' are not yet

    def close(self, timeout: float | None = None) -> None:
        try:
            if self._pins.holding:
                self.flush(timeout)  # pins are dropped only once the records are durable
        finally:
            self._inner.close(timeout)

    def __enter__(self) -> _Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Consumer:
    def __init__(self, inner: Consumer, claim: ClaimCheck) -> None:
        self._inner = inner
        self._claim = claim

    @property
    def group(self) -> str | None:
        return self._inner.group

    def subscribe(self, streams: Iterable[str], *, on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None) -> None:
        self._inner.subscribe(streams, on_assign=on_assign, on_revoke=on_revoke)

    def assignment(self) -> list[StreamPartition]:
        return self._inner.assignment()

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        records = self._inner.poll(max_records, timeout)
        check_out = self._claim.check_out
        return [check_out(r) if r.headers else r for r in records]

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> RecordBatch:
        batch = self._inner.poll_batch(max_records, timeout)
        if not any(batch.headers()):  # no record can carry a reference
            return batch
        check_out = self._claim.check_out
        return RecordList([check_out(r) if r.headers else r for r in batch], batch.ends())

    def commit(self, offsets: Mapping[StreamPartition, int] | None = None) -> None:
        self._inner.commit(offsets)

    def committed(self, partitions: Iterable[StreamPartition] | None = None
                  ) -> dict[StreamPartition, int | None]:
        return self._inner.committed(partitions)

    def position(self, partition: StreamPartition) -> int:
        return self._inner.position(partition)

    def seek(self, partition: StreamPartition, offset: int) -> None:
        self._inner.seek(partition, offset)

    def seek_to_beginning(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        self._inner.seek_to_beginning(partitions)

    def seek_to_end(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        self._inner.seek_to_end(partitions)

    def seek_to_timestamp(self, timestamp_ms: int,
                          partitions: Iterable[StreamPartition] | None = None) -> None:
        self._inner.seek_to_timestamp(timestamp_ms, partitions)

    def lag(self) -> dict[StreamPartition, int]:
        return self._inner.lag()

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:  # backend extras (e.g. Kafka group metadata)
        return getattr(self._inner, name)

    def __enter__(self) -> _Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _TransactionalProducer:
    def __init__(self, inner: TransactionalProducer, claim: ClaimCheck) -> None:
        self._inner = inner
        self._claim = claim
        self._pins = Pins(claim.store)

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None) -> None:
        ticket = self._claim.hold(stream, (value,), self._pins)
        try:
            value, headers = self._claim.outgoing(stream, value, headers)
            self._inner.send(stream, value, key=key, partition=partition, headers=headers)
        finally:
            self._pins.sent(ticket)

    def commit(self, consumer: Consumer, offsets: Mapping[StreamPartition, int]) -> None:
        inner = consumer._inner if isinstance(consumer, _Consumer) else consumer
        mark = self._pins.mark()
        self._inner.commit(inner, offsets)
        self._pins.release(mark)

    def abort(self) -> None:
        mark = self._pins.mark()
        self._inner.abort()
        self._pins.release(mark)  # nothing refers to those objects: gc may take them

    def close(self) -> None:
        self._inner.close()


class _Streams:
    def __init__(self, inner: Streams, claim: ClaimCheck) -> None:
        self._inner = inner
        self._claim = claim

    @property
    def url(self) -> str:
        return self._inner.url

    def admin(self) -> Admin:
        return self._inner.admin()

    def open_producer(self) -> Producer:
        return self._claim.wrap_producer(self._inner.open_producer())

    def open_consumer(self, group: str | None = None, *,
                      offset_reset: OffsetReset = "earliest") -> Consumer:
        return self._claim.wrap_consumer(
            self._inner.open_consumer(group, offset_reset=offset_reset))

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _Streams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _TransactionalStreams(_Streams):
    def open_transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        inner = self._inner
        assert isinstance(inner, SupportsTransactions)
        return _TransactionalProducer(inner.open_transactional_producer(transactional_id),
                                      self._claim)


def claim_checked(streams: Streams, claim: ClaimCheck) -> Streams:
    """``streams`` whose producers check large values in and whose consumers check them out
    (transactional producers too, when the backend has them)."""
    if isinstance(streams, SupportsTransactions):
        return _TransactionalStreams(streams, claim)
    return _Streams(streams, claim)
