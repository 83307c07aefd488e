"""The state of a stream–stream join: both sides' records, kept until no partner can come.

Records of one key match when their event times are at most ``within`` apart. Each side's
records wait in the shard under ``"j<side>/<key>"`` as ``[time, packed value, matched]``
lists (``matched``: 1 once it met a partner), in the order they came. A record is **late**
when the watermark ``W`` has passed ``t + within + grace``: every partner it could have had
is itself late by then. A kept record is dropped once ``W`` passes ``t + 2·within + grace``:
a partner that is not late has a time of at least ``W − within − grace``, more than
``within`` after it (Kafka Streams keeps a join's window stores as long, for the same
reason). So every pair of records that are not late meets exactly once — when the second of
the two comes — whatever order the records come in; and a record dropped without having
matched never will (a left or outer join emits it alone then).

``"j~"`` holds ``[time, side, key]`` for every kept record as a heap, so that expiry looks
only at what expires. The heap and the ``matched`` flags are changed in place only after the
handler's own code ran, or put back if it fails (``_joining_operators``): a failed attempt
leaves them as they were.
"""

from __future__ import annotations

import heapq
from typing import Any

from millstream.runtime._joining import NO_TIME, Shard, push_back

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

    def partners(self, shard: Shard, side: int, key: str, time_ms: int) -> list[list[Any]]:
        """The kept entries (``[time, packed, matched]``) of the other side's records of
        ``key`` within reach of ``time_ms``, in the order they came."""
        kept = shard.get(_PREFIX[1 - side] + key)
        if not kept:
            return []
        within = self.within
        return [entry for entry in kept if -within <= entry[0] - time_ms <= within]

    def keep(self, shard: Shard, side: int, key: str, time_ms: int, packed: Any,
             partners: list[list[Any]]) -> None:
        """Keep a record of ``side`` until its partners' time has passed; it met
        ``partners`` (marked as matched)."""
        for entry in partners:
            entry[2] = 1
        name = _PREFIX[side] + key
        kept = shard.get(name)
        entry = [time_ms, packed, 1 if partners else 0]
        shard[name] = [entry] if kept is None else [*kept, entry]
        heap = shard.get(_HEAP)
        if heap is None:
            heap = []
        heapq.heappush(heap, [time_ms, side, key])
        shard[_HEAP] = heap

    def expire(self, shard: Shard, watermark: int
               ) -> tuple[list[list[Any]], list[tuple[int, str, Any]]]:
        """Drop the kept records no partner can reach any more. Returns what was taken off
        the heap (for ``put_back``) and ``(side, key, packed)`` of the dropped records that
        never matched. (A record a partner is meeting now is not dropped now: it is within
        ``within`` of a record that is not late.)"""
        heap = shard.get(_HEAP)
        if not heap:
            return [], []
        cutoff = watermark - self.horizon  # kept while t >= cutoff
        if heap[0][0] >= cutoff:
            return [], []
        heap = list(heap)  # a copy: the stored one stays whole if the attempt fails after
        popped: list[list[Any]] = []  # this (an output that cannot be encoded, a retry)
        while heap and heap[0][0] < cutoff:
            popped.append(heapq.heappop(heap))
        unmatched: list[tuple[int, str, Any]] = []
        for side, key in dict.fromkeys((side, key) for _, side, key in popped):
            name = _PREFIX[side] + key
            left = []
            for entry in shard.get(name) or ():
                if entry[0] >= cutoff:
                    left.append(entry)
                elif not entry[2]:
                    unmatched.append((side, key, entry[1]))
            if left:
                shard[name] = left
            elif name in shard:
                del shard[name]
        shard[_HEAP] = heap
        return popped, unmatched

    @staticmethod
    def put_back(shard: Shard, popped: list[list[Any]]) -> None:
        """Undo ``expire``'s heap changes (the attempt failed; its other changes are
        dropped with the attempt)."""
        push_back(shard, _HEAP, popped)

    @staticmethod
    def kept(shard: Shard) -> int:
        """How many records the shard keeps (both sides)."""
        heap = shard.get(_HEAP)
        return len(heap) if heap else 0
