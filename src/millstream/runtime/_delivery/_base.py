"""The delivery interface: how a service's outputs, input offsets and state become durable.

One ``Delivery`` object per running service owns the *order* of the three steps — send the
outputs, make them durable, store where the input got to (offsets, and a stateful service's
state) — and when they are due. The runner only tells it what happened (a batch was handled,
time passed, partitions moved, the service stops); it never decides an order itself.

``DeliveryBase`` holds what every mode shares: the rows waiting to be sent, sending them
through a plain producer, the offsets already committed, and the commit listeners.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from millstream._wellknown import EXCEPTIONS
from millstream.errors import FencedError, RecordTooLargeError
from millstream.records import Record, StreamPartition
from millstream.runtime._metrics import Metrics
from millstream.runtime._outputs import Outputs, Row
from millstream.streams._base import Consumer, Producer

__all__ = ["CommitListener", "Delivery", "DeliveryBase", "Wiring"]

log = logging.getLogger(__name__)

#: Called right after a successful commit with the input offsets it stored (next offset per
#: stream partition; may be empty when only outputs or exception records were committed).
CommitListener = Callable[[Mapping[StreamPartition, int]], None]


class Delivery(Protocol):
    """One delivery mode: at-least-once, checkpointed (stateful at-least-once), or
    transactional (exactly-once).

    Contract, whatever the mode: an input offset is stored only once every output of the
    records before it is durable (and, for a stateful service, the state they produced); a
    record whose offset is stored is never handled again by the group. Everything here runs
    on the runner's thread.
    """

    def start(self, consumer: Consumer, producer: Producer, now: float) -> None:
        """The service's consumer and plain producer are open; ``now`` (monotonic seconds)
        starts the commit and checkpoint intervals."""
        ...

    def send(self) -> None:
        """Hand the outputs collected so far to the producer (or the open transaction);
        called after each poll batch. Nothing is durable yet."""
        ...

    def send_exception(self, value: bytes, key: bytes) -> None:
        """Queue an exception record; it is durable no later than the offset of its input."""
        ...

    def tick(self, now: float) -> None:
        """Called after every poll: commit (and checkpoint) if an interval is due."""
        ...

    def slow_record_done(self) -> None:
        """A record that took longer than the commit interval finished while its poll batch
        is still being handled: deliver what is done so far, if this mode can mid-batch."""
        ...

    def assign(self, partitions: list[StreamPartition]) -> None:
        """Partitions were assigned (load their state, where there is state)."""
        ...

    def revoke(self, partitions: list[StreamPartition]) -> None:
        """Partitions are being taken away: make durable and commit what was done on them.
        Not called once the service failed (the runner commits nothing more then)."""
        ...

    def finish(self) -> None:
        """The service stops: make everything durable and commit it."""
        ...

    def on_commit(self, listener: CommitListener) -> None:
        """Run ``listener(offsets)`` right after every successful commit, on the runner's
        thread: every output sent before the commit is durable and ``offsets`` (the input
        offsets that commit stored) are committed; not called when nothing was committed,
        nor when the commit was fenced or failed. Listeners run in the order added. An
        exception from a listener stops the service, as a failed commit does: the records
        after the commit are handled again by the group, the committed ones are not. This is
        the hook for work that must follow the service's commits (a table materialized from
        its outputs)."""
        ...

    def close(self) -> None:
        """Release what this object opened (a transactional producer); idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """What every delivery mode gets from the runner."""

    #: the service's name, for log messages
    service: str
    #: the rows handled but not yet sent
    outputs: Outputs
    #: the runner's progress: next offset per input partition (stream, partition number)
    done: dict[tuple[str, int], int]
    #: counts records sent (``records_out``, per stream)
    metrics: Metrics
    #: an output the producer refused (too large): reported as its input's failure
    refused: Callable[[Record, BaseException], None]
    #: every output so far is durable: release what waited for that (file pins)
    durable: Callable[[], None]
    commit_interval_s: float
    #: an operator's ``flush`` for the given shard numbers (None: every owned one), called
    #: before their checkpoint or the transaction that commits their offsets
    #: (``runtime._operator_hooks``); does nothing for a service without an operator
    flush_shards: Callable[[Iterable[int] | None], None] = lambda numbers: None


class DeliveryBase:
    """Behaviour every mode shares; a mode overrides ``tick``/``finish``/... as its order
    requires."""

    def __init__(self, wiring: Wiring) -> None:
        self._w = wiring
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._committed_at: dict[StreamPartition, int] = {}
        self._listeners: list[CommitListener] = []
        self._next_commit = 0.0

    def start(self, consumer: Consumer, producer: Producer, now: float) -> None:
        self._consumer, self._producer = consumer, producer
        self._next_commit = now + self._w.commit_interval_s

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def assign(self, partitions: list[StreamPartition]) -> None:
        pass

    def close(self) -> None:
        pass

    def send_exception(self, value: bytes, key: bytes) -> None:
        assert self._producer is not None
        self._producer.send(EXCEPTIONS, value, key=key)

    def send(self) -> None:
        """Write the waiting rows with ``write_batch``, one call per stream (no handles: the
        next flush acknowledges them or raises); if one is too large, write the rows of the
        streams not written yet one by one and report that one's input."""
        rows = self._w.outputs.take()
        if not rows:
            return
        producer = self._producer
        assert producer is not None
        streams, keys, values, headers, _ = zip(*rows, strict=True)
        first = streams[0]
        sent: set[str] = set()  # streams whose rows write_batch took (it takes all or none)
        count = self._w.metrics.count_out
        try:
            if streams.count(first) == len(rows):
                producer.write_batch(first, values, keys=keys, headers=headers)
                count(first, len(rows))
            else:
                for name in dict.fromkeys(streams):
                    chosen = [row for row in rows if row[0] == name]
                    producer.write_batch(name, [r[2] for r in chosen],
                                         keys=[r[1] for r in chosen],
                                         headers=[r[3] for r in chosen])
                    sent.add(name)
                    count(name, len(chosen))
        except RecordTooLargeError:
            left = [row for row in rows if row[0] not in sent]  # never send a row twice
            self._write_one_by_one(left)

    def _write_one_by_one(self, rows: list[Row]) -> None:
        assert self._producer is not None
        write, record = self._producer.write, self._w.outputs.record
        count = self._w.metrics.count_out
        for stream, key, value, headers, source in rows:
            try:
                write(stream, value, key=key, headers=headers)
                count(stream, 1)
            except RecordTooLargeError as exc:
                self._w.refused(record(source), exc)

    def _moved(self, only: Iterable[StreamPartition] | None = None,
               keep: Callable[[StreamPartition], bool] | None = None
               ) -> dict[StreamPartition, int]:
        """Input offsets reached and not yet committed (of ``only``, those ``keep`` keeps)."""
        chosen = None if only is None else set(only)
        moved: dict[StreamPartition, int] = {}
        for (stream, number), offset in self._w.done.items():
            sp = StreamPartition(stream, number)
            if ((chosen is None or sp in chosen) and (keep is None or keep(sp))
                    and self._committed_at.get(sp) != offset):
                moved[sp] = offset
        return moved

    def _commit_offsets(self, offsets: dict[StreamPartition, int]) -> None:
        """Store ``offsets`` for the group (their outputs must be durable by now); a member
        that lost the partitions is told and goes on (their new owner handles them again)."""
        assert self._consumer is not None
        try:
            self._consumer.commit(offsets)
        except FencedError as exc:
            log.warning("service %s: %s (the records will be processed again by their new "
                        "owner)", self._w.service, exc)
            return
        self._committed(offsets)

    def _committed(self, offsets: dict[StreamPartition, int]) -> None:
        self._committed_at.update(offsets)
        for listener in self._listeners:
            listener(offsets)

    def _forget(self, partitions: Iterable[StreamPartition]) -> None:
        for sp in partitions:
            self._committed_at.pop(sp, None)
