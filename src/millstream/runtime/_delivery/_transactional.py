"""Transactional delivery: exactly-once, on a backend with transactions.

Outputs, exception records, a stateful service's checkpoints and the input offsets are
written in one transaction per commit interval: a crash anywhere leaves all of them or none,
so after a restart every input's outputs and state changes appear exactly once for readers
that read committed records (the embedded log's readers, and Kafka's ``read_committed``, the
default). Order of a commit: an operator's ``flush`` of every shard → send the waiting
outputs into the transaction → add a checkpoint of every shard that changed or moved →
commit the transaction with the offsets → release what waited for the outputs. Fault points
``service.transaction.before_commit`` / ``service.transaction.after_commit``. Side effects
outside the streams (files, calls to other systems) are not part of the transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from millstream._wellknown import CHECKPOINTS, EXCEPTIONS
from millstream.errors import RecordTooLargeError
from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.runtime._delivery._base import DeliveryBase, Wiring
from millstream.runtime._state import ServiceState, Shard
from millstream.streams._base import (
    Consumer,
    Producer,
    SupportsTransactions,
    TransactionalProducer,
)

__all__ = ["Transactional"]


class Transactional(DeliveryBase):
    """One transaction per commit: outputs, exception records, checkpoints and offsets."""

    def __init__(self, wiring: Wiring, streams: SupportsTransactions, transactional_id: str,
                 state: ServiceState | None, partitions: Callable[[str], int]) -> None:
        super().__init__(wiring)
        self._streams = streams
        #: stable per instance slot: a restarted instance fences its dead predecessor and
        #: aborts its open transaction at once, instead of readers waiting for it to expire
        self._id = transactional_id
        self._state = state
        self._partitions = partitions
        self._txn: TransactionalProducer | None = None
        self._dirty = False  # something was sent since the last commit

    def start(self, consumer: Consumer, producer: Producer, now: float) -> None:
        super().start(consumer, producer, now)
        self._txn = self._streams.open_transactional_producer(self._id)

    def send(self) -> None:
        rows = self._w.outputs.take()
        if not rows:
            return
        txn = self._txn
        assert txn is not None
        self._dirty = True
        record = self._w.outputs.record
        for stream, key, value, headers, source in rows:
            try:  # a keyless output stays on its input's partition number
                txn.send(stream, value, key=key, headers=headers,
                         partition=None if key is not None
                         else record(source).partition % self._partitions(stream))
            except RecordTooLargeError as exc:
                self._w.refused(record(source), exc)
        count = self._w.metrics.count_out
        streams = [row[0] for row in rows]
        if streams.count(streams[0]) == len(streams):
            count(streams[0], len(streams))
        else:
            for stream, n in Counter(streams).items():
                count(stream, n)

    def send_exception(self, value: bytes, key: bytes) -> None:
        assert self._txn is not None
        self._dirty = True
        self._txn.send(EXCEPTIONS, value, key=key)

    def tick(self, now: float) -> None:
        if now >= self._next_commit:
            self._commit()
            self._next_commit = now + self._w.commit_interval_s

    def slow_record_done(self) -> None:
        pass  # a poll batch commits in one transaction

    def assign(self, partitions: list[StreamPartition]) -> None:
        if self._state is not None:
            assert self._consumer is not None
            self._state.load(partitions, self._consumer)

    def revoke(self, partitions: list[StreamPartition]) -> None:
        # The open transaction holds the outputs of the kept partitions' records too: it
        # commits their offsets (and checkpoints their shards) with them, or the next owner
        # after a crash would handle those records again and their outputs come out twice.
        self._commit()
        if self._state is not None:
            self._state.drop(self._state.numbers(partitions))
        self._forget(partitions)

    def finish(self) -> None:
        self._commit()

    def close(self) -> None:
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.close()

    def _commit(self) -> None:
        """Commit the transaction: every output sent into it, a checkpoint of every shard
        that changed or moved, and every input offset they match — all or nothing."""
        txn = self._txn
        assert txn is not None
        self._w.flush_shards(None)  # an operator's rows join the transaction
        self.send()
        # every shard whose offsets moved gets a checkpoint in the same transaction, so on
        # restart state and committed offsets agree exactly
        written = self._checkpoint(txn) if self._state is not None else []
        offsets = self._moved()
        if not offsets and not written and not self._dirty:
            self._w.durable()
            return
        fault_point("service.transaction.before_commit")
        assert self._consumer is not None
        txn.commit(self._consumer, offsets)
        self._dirty = False
        self._w.durable()  # every output and every shard's state is durable
        if self._state is not None:
            for number, shard_offsets, shard in written:
                self._state.store.remember(number, shard_offsets, shard.data, 0)
                shard.changed = False
            self._state.since_checkpoint = 0
        self._committed(offsets)
        fault_point("service.transaction.after_commit")

    def _checkpoint(self, txn: TransactionalProducer
                    ) -> list[tuple[int, dict[str, int], Shard]]:
        state = self._state
        assert state is not None
        written: list[tuple[int, dict[str, int], Shard]] = []
        for number, shard in state.shards.items():
            moved = state.offsets(number)
            latest = state.store.latest(number)
            if shard.changed or (latest.offsets if latest else {}) != moved:
                txn.send(CHECKPOINTS, state.store.encode(number, moved, shard.data,
                                                         state.since_checkpoint),
                         key=state.store.key(number))
                written.append((number, moved, shard))
        return written
