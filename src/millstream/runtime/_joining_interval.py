"""The state of a stream–stream join: both sides' records, kept until no partner can come.

Records of one key match when their event times are at most ``within`` apart. Each side's
records wait in the shard under ``"j<side>/<key>"`` as ``[time, packed value]`` lists, in the
order they came. A record is **late** when the watermark ``W`` has passed ``t + within +
grace``: every partner it could have had is itself late by then. A kept record is dropped
once ``W`` passes ``t + 2·within + grace``: a partner that is not late has a time of at least
``W − within − grace``, more than ``within`` after it (Kafka Streams keeps a join's window
stores as long, for the same reason). So every pair of records that are not late meets
exactly once — when the second of the two comes — whatever order the records come in.

``"j~"`` holds ``[time, side, key]`` for every kept record as a heap, so that expiry looks
only at what expires. Lists are changed in place only after the handler's own code ran (see
``join_operators``): a failed attempt leaves them as they were.
"""

from __future__ import annotations

import heapq
from typing import Any

from millstream.runtime._joining import NO_TIME, Shard

__all__ = ["LEFT", "RIGHT", "IntervalBuffers"]

LEFT, RIGHT = 0, 1
_PREFIX = ("j0/", "j1/")
_HEAP = "j~"


class IntervalBuffers:
    """Keeps and matches the records of a join within ``within_ms`` with ``grace_ms``."""

    __slots__ = ("grace", "horizon", "within")

    def __init__(self, within_ms: int, grace_ms: int) -> None:
        self.within = within_ms
        self.grace = grace_ms
        #: a kept record at t goes once the watermark passes t + horizon
        self.horizon = 2 * within_ms + grace_ms

    def late(self, time_ms: int, watermark: int) -> bool:
        """A record at ``time_ms`` can no longer meet a partner that is not late."""
        return watermark != NO_TIME and watermark > time_ms + self.within + self.grace

    def partners(self, shard: Shard, side: int, key: str, time_ms: int) -> list[Any]:
        """The kept packed values of the other side's records of ``key`` within reach of
        ``time_ms``, in the order they came."""
        kept = shard.get(_PREFIX[1 - side] + key)
        if not kept:
            return []
        within = self.within
        return [packed for t, packed in kept if -within <= t - time_ms <= within]

    def keep(self, shard: Shard, side: int, key: str, time_ms: int, packed: Any) -> None:
        """Keep a record of ``side`` until its partners' time has passed."""
        name = _PREFIX[side] + key
        kept = shard.get(name)
        shard[name] = [[time_ms, packed]] if kept is None else [*kept, [time_ms, packed]]
        heap = shard.get(_HEAP)
        if heap is None:
            heap = []
        heapq.heappush(heap, [time_ms, side, key])
        shard[_HEAP] = heap

    def expire(self, shard: Shard, watermark: int) -> int:
        """Drop the kept records no partner can reach any more; how many."""
        heap = shard.get(_HEAP)
        if not heap:
            return 0
        cutoff = watermark - self.horizon  # kept while t >= cutoff
        if heap[0][0] >= cutoff:
            return 0
        dropped = 0
        touched: set[tuple[int, str]] = set()
        while heap and heap[0][0] < cutoff:
            _, side, key = heapq.heappop(heap)
            touched.add((side, key))
            dropped += 1
        for side, key in touched:
            name = _PREFIX[side] + key
            left = [entry for entry in shard.get(name) or () if entry[0] >= cutoff]
            if left:
                shard[name] = left
            elif name in shard:
                del shard[name]
        shard[_HEAP] = heap
        return dropped

    @staticmethod
    def kept(shard: Shard) -> int:
        """How many records the shard keeps (both sides)."""
        heap = shard.get(_HEAP)
        return len(heap) if heap else 0
