"""At-least-once delivery for a stateless service (the default).

Order of a commit: send the waiting outputs → flush the producer (every output is durable)
→ release what waited for them → commit the input offsets they came from. A process that
dies before the commit has its records handled again by the group: nothing is lost, what was
flushed and not committed comes out twice. Fault points ``service.commit.after_flush`` and
``service.commit.after_commit`` mark the moments either side of the commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.runtime._delivery._base import DeliveryBase

__all__ = ["AtLeastOnce"]


class AtLeastOnce(DeliveryBase):
    """Flush, then commit; every commit interval, and within a batch of slow records."""

    def tick(self, now: float) -> None:
        if now >= self._next_commit:
            self._commit()
            self._next_commit = now + self._w.commit_interval_s

    def slow_record_done(self) -> None:
        self._commit()

    def revoke(self, partitions: list[StreamPartition]) -> None:
        self._commit(partitions)
        self._forget(partitions)

    def finish(self) -> None:
        self._commit()

    def _commit(self, only: Iterable[StreamPartition] | None = None) -> None:
        self.send()
        assert self._producer is not None
        self._producer.flush()
        self._w.durable()
        offsets = self._moved(only)
        if not offsets:
            return
        fault_point("service.commit.after_flush")
        self._commit_offsets(offsets)
        fault_point("service.commit.after_commit")
