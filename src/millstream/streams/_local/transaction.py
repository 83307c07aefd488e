"""Transactions on the embedded log: records plus a group's offsets in one SQLite transaction.

``send`` buffers records in memory (checked and placed like the producer's); ``commit`` hands
them to the consumer, whose commit writes the batch rows and the group's offsets in the same
write transaction, after its fencing checks. A crash before that transaction commits leaves
neither; after, both. ``abort`` drops the buffer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

from millstream.errors import ClosedError, DeliveryError, InvalidRequestError, RecordTooLargeError
from millstream.records import Headers, StreamPartition, record_size
from millstream.streams._base import Consumer
from millstream.streams._local import append, catalog
from millstream.streams._local import batch as batchfmt
from millstream.streams._local._wakeup import ring
from millstream.streams._local.consumer import LocalConsumer
from millstream.streams._local.db import LocalOptions, connect, translate
from millstream.streams._partitioner import partition_for_key

__all__ = ["LocalTransactionalProducer"]


class _Pending:
    __slots__ = ("headers", "keys", "meta", "partition", "size", "timestamps", "values")

    def __init__(self, meta: catalog.StreamMeta, partition: int) -> None:
        self.meta = meta
        self.partition = partition
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.headers: list[Headers] = []
        self.size = 0


class LocalTransactionalProducer:
    """See ``millstream.streams._base.TransactionalProducer``."""

    def __init__(self, path: Path, options: LocalOptions, transactional_id: str) -> None:
        if not isinstance(transactional_id, str) or not transactional_id:
            raise InvalidRequestError(
                f"transactional_id must be a non-empty string, got {transactional_id!r}"
            )
        self.transactional_id = transactional_id
        self._path = path
        self._limit = options.max_record_bytes
        self._conn: sqlite3.Connection | None = connect(path, options)
        self._metas: dict[str, catalog.StreamMeta] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClosedError("this transactional producer is closed; open a new one")
        return self._conn

    def _meta(self, stream: str) -> catalog.StreamMeta:
        meta = self._metas.get(stream)
        if meta is None:
            try:
                meta = catalog.require(self._live(), stream)
            except sqlite3.Error as exc:
                raise translate(exc, self._path, f"looking up stream {stream!r}") from exc
            self._metas[stream] = meta
        return meta

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None) -> None:
        size = record_size(key, value, headers)
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        meta = self._meta(stream)
        if partition is None:
            if key is None:
                raise InvalidRequestError(
                    f"a transactional send to {stream!r} needs a key or a partition"
                )
            partition = partition_for_key(key, meta.partitions)
        elif type(partition) is not int or not 0 <= partition < meta.partitions:
            raise InvalidRequestError(
                f"partition {partition!r} is out of range for stream {stream!r}, which has "
                f"partitions 0..{meta.partitions - 1}"
            )
        slot = (stream, partition)
        pending = self._pending.get(slot)
        if pending is None:
            pending = self._pending[slot] = _Pending(meta, partition)
        pending.timestamps.append(time.time_ns() // 1_000_000)
        pending.keys.append(key)
        pending.values.append(value)
        pending.headers.append(tuple(headers) if headers else ())
        pending.size += size

    def commit(self, consumer: Consumer, offsets: Mapping[StreamPartition, int]) -> None:
        self._live()
        if not isinstance(consumer, LocalConsumer):
            raise InvalidRequestError(
                f"a local transaction commits offsets of a local consumer, not "
                f"{type(consumer).__name__}"
            )
        batches = [
            (p, batchfmt.encode(p.timestamps, p.keys, p.values,
                                p.headers if any(p.headers) else None))
            for p in self._pending.values()
        ]

        def write(conn: sqlite3.Connection) -> None:
            for p, payload in batches:
                base = append.next_offset(conn, p.meta.id, p.partition)
                if base is None:
                    raise DeliveryError(
                        f"stream {p.meta.name!r} was deleted during the transaction; nothing "
                        "was committed"
                    )
                append.insert_batch(conn, p.meta.id, p.partition, base, len(p.values),
                                    max(p.timestamps), p.size, payload,
                                    batchfmt.payload_crc(payload))

        try:
            consumer.commit_with(offsets, write)
            ring(self._path, {p.meta.id for p, _ in batches})
        finally:
            self._pending.clear()

    def abort(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self._pending.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
