"""The embedded log's producer: buffers records and appends them with group commit.

``send`` puts a record into an open batch for its partition and returns a handle at once. A
writer thread takes every buffered batch, appends them all in one ``BEGIN IMMEDIATE``
transaction (one fsync), and then resolves their handles: while one commit syncs, the next
records accumulate, so one fsync serves many records whatever the caller's rhythm. After a
failed commit the producer stops: it never acknowledges what it could not store.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from millstream.errors import (
    ClosedError,
    DeliveryError,
    InvalidRequestError,
    MillstreamError,
    OperationTimeoutError,
    RecordTooLargeError,
)
from millstream.faults import fault_point
from millstream.records import Headers, record_size
from millstream.streams._checks import check_batch
from millstream.streams._local import append, catalog, retention
from millstream.streams._local import batch as batchfmt
from millstream.streams._local._buffered import Batch as _Batch
from millstream.streams._local._buffered import BatchHandle as _BatchHandle
from millstream.streams._local._buffered import RecordHandle as _RecordHandle
from millstream.streams._local._buffered import merge as _merge
from millstream.streams._local._wakeup import ring
from millstream.streams._local.db import LocalOptions, connect, translate
from millstream.streams._partitioner import partition_for_key

__all__ = ["LocalProducer"]

log = logging.getLogger(__name__)
_KEY_CACHE_LIMIT = 100_000


class LocalProducer:
    """A producer on the embedded log; see ``millstream.streams._base.Producer``."""

    def __init__(self, path: Path, options: LocalOptions) -> None:
        self._path = path
        self._options = options
        self._limit = options.max_record_bytes
        self._conn = connect(path, options)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._streams: dict[str, catalog.StreamMeta] = {}
        self._key_partitions: dict[int, dict[bytes, int]] = {}  # stream id -> key -> partition
        self._sticky: dict[int, int] = {}
        self._open: dict[tuple[int, int], _Batch] = {}
        self._sealed: list[_Batch] = []
        self._buffered = 0
        self._seq = 0
        self._done_seq = 0
        self._error: MillstreamError | None = None
        self._batch_errors: list[tuple[int, MillstreamError, int]] = []  # seq, error, records
        self._lost = 0  # records not stored when the writer stopped
        self._sized: tuple[Headers | None, int] = (None, 0)  # write()'s last headers, sized
        self._told = threading.local()  # per thread: the last batch its flushes reported on
        self._closed = False
        self._stopping = False
        self._writer_idle = False
        self._writer = threading.Thread(target=self._run, name="millstream-producer", daemon=True)
        self._writer.start()

    # -- sending ---------------------------------------------------------------------------

    def _meta(self, stream: str) -> catalog.StreamMeta:
        meta = self._streams.get(stream)
        if meta is None:
            try:
                meta = catalog.require(self._conn, stream)
            except sqlite3.Error as exc:
                raise translate(exc, self._path, f"looking up stream {stream!r}") from exc
            self._streams[stream] = meta
        return meta

    def _partition(self, meta: catalog.StreamMeta, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if type(partition) is not int or not 0 <= partition < meta.partitions:
                raise InvalidRequestError(
                    f"partition {partition!r} is out of range for stream {meta.name!r}, "
                    f"which has partitions 0..{meta.partitions - 1}"
                )
            return partition
        if key is not None:
            cache = self._key_cache(meta)
            cached = cache.get(key)
            if cached is None:
                cached = cache[key] = partition_for_key(key, meta.partitions)
            return cached
        if meta.retention.compact:
            raise InvalidRequestError(
                f"stream {meta.name!r} is compacted, so every record needs a key; pass key=..."
            )
        sticky = self._sticky.get(meta.id)
        if sticky is None:
            sticky = self._sticky[meta.id] = random.randrange(meta.partitions)
        return sticky

    def _key_cache(self, meta: catalog.StreamMeta) -> dict[bytes, int]:
        cache = self._key_partitions.get(meta.id)
        if cache is None or len(cache) > _KEY_CACHE_LIMIT:
            cache = self._key_partitions[meta.id] = {}
        return cache

    def _batch_for(self, meta: catalog.StreamMeta, partition: int) -> _Batch:
        slot = (meta.id, partition)
        b = self._open.get(slot)
        if b is None or b.size >= self._options.max_batch_bytes:
            if b is not None:
                self._sealed.append(b)
                self._sticky.pop(meta.id, None)
            self._seq += 1
            b = self._open[slot] = _Batch(meta, partition, self._seq)
        return b

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this producer is closed; open a new one")
        if self._error is not None:
            raise DeliveryError(
                f"this producer stopped after a failed write ({self._error}); "
                "records sent since were not stored — open a new producer"
            ) from self._error

    def _await_room(self) -> None:
        if self._buffered <= self._options.max_buffer_bytes:
            return
        deadline = time.monotonic() + self._options.busy_timeout_ms / 1000
        while self._buffered > self._options.max_buffer_bytes and self._error is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationTimeoutError(
                    f"the producer's buffer stayed over {self._options.max_buffer_bytes} bytes "
                    "beyond the busy timeout: the database is not keeping up"
                )
            self._cond.wait(remaining)

    def send(
        self,
        stream: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp: int | None = None,
    ) -> _RecordHandle:
        size = record_size(key, value, headers)
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        with self._lock:
            self._check_open()
            self._await_room()
            meta = self._meta(stream)
            b = self._batch_for(meta, self._partition(meta, key, partition))
            index = len(b.values)
            b.timestamps.append(timestamp)
            b.keys.append(key)
            b.values.append(value)
            if headers:
                if b.headers is None:
                    b.headers = [()] * index
                b.headers.append(tuple(headers))
            elif b.headers is not None:
                b.headers.append(())
            b.size += size
            self._buffered += size
            if self._writer_idle:
                self._cond.notify()
        return _RecordHandle(b, index)

    def write(
        self,
        stream: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp: int | None = None,
    ) -> None:
        # send() without the handle, and with its helpers' common cases inline
        size = (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers:  # a service's outputs share one headers tuple: sized once
            sized = self._sized
            if sized[0] is not headers:
                headers = tuple(headers)  # a list may change before the next call
                sized = self._sized = (headers, record_size(None, None, headers))
            size += sized[1]
        if size > self._limit:
            raise RecordTooLargeError(size, self._limit, stream)
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        with self._lock:
            if self._closed or self._error is not None:
                self._check_open()
            if self._buffered > self._options.max_buffer_bytes:
                self._await_room()
            meta = self._streams.get(stream) or self._meta(stream)
            b = self._batch_for(meta, self._partition(meta, key, partition))
            b.timestamps.append(timestamp)
            b.keys.append(key)
            if headers:
                if b.headers is None:
                    b.headers = [()] * len(b.values)
                b.headers.append(headers)
            elif b.headers is not None:
                b.headers.append(())
            b.values.append(value)
            b.size += size
            self._buffered += size
            if self._writer_idle:
                self._cond.notify()

    def send_batch(
        self,
        stream: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> _BatchHandle:
        parts, order = self._buffer_batch(stream, values, keys, partition, headers)
        return _BatchHandle(parts, order) if order is not None else _BatchHandle(_merge(parts))

    def write_batch(
        self,
        stream: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        self._buffer_batch(stream, values, keys, partition, headers)

    def _buffer_batch(
        self, stream: str, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None,
        partition: int | None, headers: Sequence[Headers] | None,
    ) -> tuple[list[tuple[_Batch, int, int]], list[int] | None]:
        """Check and buffer a batch: the runs holding it (batch, start, count) and, when its
        records went to several partitions, their indexes in the order of the runs."""
        n = len(values)
        sizes = check_batch(stream, values, keys, headers, self._limit)
        now = time.time_ns() // 1_000_000
        parts: list[tuple[_Batch, int, int]] = []
        with self._lock:
            self._check_open()
            self._await_room()
            meta = self._meta(stream)
            if keys is None:
                target = self._partition(meta, None, partition)
                self._append_run(meta, target, values, None, headers, sizes, now, 0, n, parts)
            else:
                targets: list[int | None]
                if partition is None and None not in keys:
                    cache = self._key_cache(meta)
                    targets = [cache.get(k) for k in keys]  # type: ignore[arg-type]
                    if None in targets:  # hash only the keys not seen yet
                        for i, placed in enumerate(targets):
                            if placed is None:
                                k = keys[i]
                                assert k is not None
                                targets[i] = cache[k] = partition_for_key(k, meta.partitions)
                else:
                    targets = [self._partition(meta, k, partition) for k in keys]
                spread: dict[int | None, list[int]] = {}
                for i, placed in enumerate(targets):
                    spread.setdefault(placed, []).append(i)
                if len(spread) <= 1:
                    self._append_run(meta, targets[0] or 0 if n else 0, values, keys, headers,
                                     sizes, now, 0, n, parts)
                else:
                    # one run per partition, each in the order sent
                    order: list[int] = []
                    for placed, indexes in spread.items():
                        assert placed is not None
                        self._append_run(
                            meta, placed, [values[i] for i in indexes],
                            [keys[i] for i in indexes],
                            [headers[i] for i in indexes] if headers is not None else None,
                            [sizes[i] for i in indexes], now, 0, len(indexes), parts)
                        order.extend(indexes)
                    self._cond.notify()
                    return parts, order
            self._cond.notify()
        return parts, None

    def _append_run(
        self, meta: catalog.StreamMeta, partition: int, values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None, headers: Sequence[Headers] | None,
        sizes: list[int], now: int, lo: int, hi: int, parts: list[tuple[_Batch, int, int]],
    ) -> None:
        """Append records ``lo..hi-1`` to ``partition``, sealing batches as they fill."""
        limit = self._options.max_batch_bytes
        i = lo
        while i < hi:
            b = self._batch_for(meta, partition)
            start = len(b.values)
            room = limit - b.size
            j, taken = i, 0
            while j < hi and (taken < room or j == i):
                taken += sizes[j]
                j += 1
            count = j - i
            b.timestamps.extend([now] * count)
            b.values.extend(values[i:j])
            b.keys.extend(keys[i:j] if keys is not None else [None] * count)
            if headers is not None:
                if b.headers is None:
                    b.headers = [()] * start
                b.headers.extend(tuple(h) for h in headers[i:j])
            elif b.headers is not None:
                b.headers.extend([()] * count)
            b.size += taken
            self._buffered += taken
            parts.append((b, start, count))
            i = j

    def flush(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            while self._done_seq < target and self._error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise OperationTimeoutError(
                        f"flush did not finish within {timeout} s; records are still being "
                        "written — flush again"
                    )
                self._cond.wait(remaining)
            if self._error is not None and self._done_seq < target:
                raise DeliveryError(
                    f"{self._lost} records were not stored: {self._error}",
                    undelivered=self._lost) from self._error
            # every thread is told of each failure once (see the Kafka producer's _untold)
            told = getattr(self._told, "seq", 0)
            failed = [(e, n) for seq, e, n in self._batch_errors if told < seq <= target]
            self._told.seq = max(told, target)
            if len(self._batch_errors) > 10_000:
                del self._batch_errors[:5_000]
            if failed:
                lost = sum(n for _, n in failed)
                raise DeliveryError(f"{lost} records were not stored: {failed[0][0]}",
                                    undelivered=lost) from failed[0][0]

    def close(self, timeout: float | None = None) -> None:
        with self._cond:
            if self._closed:
                return
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._stopping = True
                self._cond.notify_all()
            self._writer.join()
            self._conn.close()

    def __enter__(self) -> LocalProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------

    def _take(self) -> list[_Batch]:
        taken = self._sealed
        taken.extend(self._open.values())
        self._sealed = []
        self._open = {}
        self._sticky.clear()  # keyless records pick a fresh partition for the next batch
        return taken

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        batches: list[_Batch] = []
        last_retention = time.monotonic()  # first pass one interval after opening
        try:
            conn = connect(self._path, self._options)
            while True:
                with self._cond:
                    while not self._open and not self._sealed and not self._stopping:
                        self._writer_idle = True
                        self._cond.wait()
                        self._writer_idle = False
                    if not self._open and not self._sealed:
                        return
                    batches = self._take()
                self._commit(conn, batches)
                with self._cond:
                    self._batch_errors.extend((b.seq, b.error, len(b.values))
                                              for b in batches if b.error)
                    self._buffered -= sum(b.size for b in batches)
                    self._done_seq = max(b.seq for b in batches)
                    self._cond.notify_all()
                now = time.monotonic()
                if now - last_retention >= self._options.retention_check_ms / 1000:
                    last_retention = now
                    retention.enforce(conn, self._path, {b.meta.id for b in batches})
        except MillstreamError as exc:
            self._fail(exc, batches)
        except Exception as exc:  # the writer must never die silently
            log.exception("the producer's writer thread failed")
            self._fail(DeliveryError(f"the producer's writer failed: {exc!r}"), batches)
        finally:
            if conn is not None:
                conn.close()

    def _fail(self, error: MillstreamError, failing: list[_Batch]) -> None:
        with self._cond:
            self._error = error
            leftovers = self._take()
            self._lost += sum(len(b.values) for b in failing + leftovers
                              if b.seq > self._done_seq)
            self._buffered = 0
            self._cond.notify_all()
        for b in leftovers:
            b.error = error
            b.event.set()

    def _commit(self, conn: sqlite3.Connection, batches: list[_Batch]) -> None:
        crcs = [
            (batchfmt.encode_parts(b.timestamps, b.keys, b.values, b.headers), b)
            for b in batches
        ]
        prepared = [(payload, batchfmt.payload_crc(payload), b) for payload, b in crcs]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = append.place(conn, [p for p, _, _ in prepared], self._options)
                next_offsets: dict[tuple[int, int], int | None] = {}
                for (_, pcrc, b), (ref, segment) in zip(prepared, stored, strict=True):
                    slot = (b.meta.id, b.partition)
                    if slot not in next_offsets:
                        next_offsets[slot] = append.next_offset(conn, *slot)
                    base = next_offsets[slot]
                    if base is None:
                        b.error = DeliveryError(
                            f"stream {b.meta.name!r} was deleted while records were buffered"
                        )
                        continue
                    next_offsets[slot] = append.insert_batch(
                        conn, b.meta.id, b.partition, base, len(b.values), max(b.timestamps),
                        b.size, ref, pcrc, segment)
                    b.base = base
                fault_point("log.append.before_commit")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, MillstreamError) as exc:
            error = (translate(exc, self._path, "appending records")
                     if isinstance(exc, sqlite3.Error) else exc)
            for b in batches:
                b.error = error
                b.event.set()
            raise error from exc
        fault_point("log.append.after_commit")
        ring(self._path, {b.meta.id for b in batches if b.error is None})
        for b in batches:
            if b.error is not None:
                self._streams.pop(b.meta.name, None)
            b.event.set()
