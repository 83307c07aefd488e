"""Checkpointed delivery: at-least-once for a stateful service.

A stateful service's input offsets move only with its state. Order of a checkpoint: send the
waiting outputs → flush the producer → write a checkpoint (state + the input offsets it
matches) of every shard that changed, waiting for each → release what waited for them →
commit those offsets. Checkpoints are due every ``checkpoint_interval`` or every
``checkpoint_records`` records, when partitions are revoked, and at the end. Between them,
each commit interval only flushes the outputs. The retry stream's offsets are committed only
after a checkpoint of every shard (a replayed record may change any shard's state), and a
revoked retry stream is handed over with one: a replay whose effect on the state is lost by a
crash is handled again (at least once), never skipped. A crash re-reads from the last
checkpoint: the state is restored with it, so it never counts an input record twice; outputs
since then come out again. Fault points ``service.checkpoint.before_write`` /
``service.checkpoint.after_write``.
"""

from __future__ import annotations

from collections.abc import Iterable

from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.runtime._delivery._base import DeliveryBase, Wiring
from millstream.runtime._state import ServiceState
from millstream.streams._base import Consumer, Producer

__all__ = ["Checkpointed"]


class Checkpointed(DeliveryBase):
    """Flush, checkpoint the state, then commit the offsets the state matches."""

    def __init__(self, wiring: Wiring, state: ServiceState, retry_stream: str, *,
                 checkpoint_interval_s: float, checkpoint_records: int) -> None:
        super().__init__(wiring)
        self._state = state
        self._retry_stream = retry_stream
        self._interval = checkpoint_interval_s
        self._records = checkpoint_records
        self._next_checkpoint = 0.0

    def start(self, consumer: Consumer, producer: Producer, now: float) -> None:
        super().start(consumer, producer, now)
        self._next_checkpoint = now + self._interval

    def tick(self, now: float) -> None:
        if now >= self._next_checkpoint or self._state.since_checkpoint >= self._records:
            self._checkpoint()
            self._next_checkpoint = now + self._interval
            self._next_commit = now + self._w.commit_interval_s
        elif now >= self._next_commit:
            self._flush()
            self._next_commit = now + self._w.commit_interval_s

    def slow_record_done(self) -> None:
        self._flush()

    def assign(self, partitions: list[StreamPartition]) -> None:
        assert self._consumer is not None
        self._state.load(partitions, self._consumer)

    def revoke(self, partitions: list[StreamPartition]) -> None:
        numbers = self._state.numbers(partitions)
        # a replayed record may have changed any shard: the retry stream is handed over
        # only with a checkpoint of every one
        retry = any(self._is_retry(sp) for sp in partitions)
        self._checkpoint(None if retry else numbers)
        self._state.drop(numbers)
        self._forget(partitions)

    def finish(self) -> None:
        self._checkpoint()

    def _is_retry(self, sp: StreamPartition) -> bool:
        return sp.stream == self._retry_stream

    def _flush(self) -> None:
        """Make the outputs durable; no offset moves (they move with checkpoints)."""
        self.send()
        assert self._producer is not None
        self._producer.flush()

    def _checkpoint(self, numbers: Iterable[int] | None = None) -> None:
        """Flush outputs, write checkpoints of the shards that moved, then commit their
        offsets (all shards unless ``numbers``)."""
        state, producer, metrics = self._state, self._producer, self._w.metrics
        assert producer is not None
        chosen = list(state.shards) if numbers is None else [n for n in numbers
                                                             if n in state.shards]
        sent = metrics.records_out
        self._w.flush_shards(chosen)  # an operator's rows go out before its checkpoint
        self.send()
        producer.flush()
        fault_point("service.checkpoint.before_write")
        commit: dict[StreamPartition, int] = {}
        for number in chosen:
            shard = state.shards[number]
            offsets = state.offsets(number)
            latest = state.store.latest(number)
            if not shard.changed and latest is not None and latest.offsets == offsets:
                # its checkpoint holds these offsets: commit them if a crash came between
                # that checkpoint and its commit (else nothing would, the shard being idle)
                commit.update({StreamPartition(s, number): o for s, o in offsets.items()})
                continue
            state.store.write(producer, number, offsets, shard.data, state.since_checkpoint)
            shard.changed = False
            commit.update({StreamPartition(s, number): o for s, o in offsets.items()})
        if numbers is None:  # outputs and every shard's state are durable
            self._w.durable()
        fault_point("service.checkpoint.after_write")
        state.since_checkpoint = 0
        if numbers is None:  # a replay's effect on any shard is in a checkpoint now
            commit.update(self._moved(keep=self._is_retry))
        commit = {sp: o for sp, o in commit.items() if self._committed_at.get(sp) != o}
        if commit:
            self._commit_offsets(commit)
        elif metrics.records_out != sent:  # rows without new input (an operator's hook:
            self._committed({})  # windows the idle clock closed) are durable: feed tables
