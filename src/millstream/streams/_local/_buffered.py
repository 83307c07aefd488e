"""The embedded producer's buffered batches, and the handles that wait on them.

A ``Batch`` is the records buffered for one partition, stored as one row; the writer thread
sets its event once the row is committed (or failed). A ``RecordHandle`` is one record's
place in a batch, a ``BatchHandle`` the runs of a ``send_batch`` over one or more batches.
"""

from __future__ import annotations

import threading
import time

from millstream.errors import DeliveryError, MillstreamError, OperationTimeoutError
from millstream.records import Headers, Position
from millstream.streams._local import catalog

__all__ = ["Batch", "BatchHandle", "RecordHandle", "merge"]


class Batch:
    """Records buffered for one partition, stored as one row."""

    __slots__ = (
        "base", "error", "event", "headers", "keys", "meta", "partition", "seq", "size",
        "timestamps", "values",
    )

    def __init__(self, meta: catalog.StreamMeta, partition: int, seq: int) -> None:
        self.meta = meta
        self.partition = partition
        self.seq = seq
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.headers: list[Headers] | None = None
        self.size = 0
        self.base = -1
        self.error: MillstreamError | None = None
        self.event = threading.Event()

    def wait(self, timeout: float | None) -> None:
        if not self.event.wait(timeout):
            raise OperationTimeoutError(
                f"records for {self.meta.name}[{self.partition}] were not acknowledged within "
                f"{timeout} s; they may still be stored — wait again or flush()"
            )
        if self.error is not None:
            raise DeliveryError(
                f"records for {self.meta.name}[{self.partition}] were not stored: {self.error}"
            ) from self.error


class RecordHandle:
    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.event.is_set()

    def wait(self, timeout: float | None = None) -> Position:
        b = self._batch
        b.wait(timeout)
        return Position(b.meta.name, b.partition, b.base + self._index)


class BatchHandle:
    __slots__ = ("_order", "_parts")

    def __init__(self, parts: list[tuple[Batch, int, int]],
                 order: list[int] | None = None) -> None:
        self._parts = parts
        self._order = order  # parts hold records grouped by partition: their original indexes

    def done(self) -> bool:
        return all(b.event.is_set() for b, _, _ in self._parts)

    def wait(self, timeout: float | None = None) -> list[Position]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[Position] = []
        for b, start, count in self._parts:
            b.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            name, part, base = b.meta.name, b.partition, b.base
            out.extend(Position(name, part, base + i) for i in range(start, start + count))
        if self._order is None:
            return out
        ordered: list[Position] = out[:]
        for position, index in zip(out, self._order, strict=True):
            ordered[index] = position
        return ordered


def merge(parts: list[tuple[Batch, int, int]]) -> list[tuple[Batch, int, int]]:
    """Join adjacent runs in the same batch (one per record when keys differ)."""
    merged: list[tuple[Batch, int, int]] = []
    for b, start, count in parts:
        if merged and merged[-1][0] is b and merged[-1][1] + merged[-1][2] == start:
            merged[-1] = (b, merged[-1][1], merged[-1][2] + count)
        else:
            merged.append((b, start, count))
    return merged
