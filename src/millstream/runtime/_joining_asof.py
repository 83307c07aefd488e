"""The state of an as-of join: each key's table-side versions, and the records waiting.

A record of the stream side at time ``t`` is joined with the latest table-side version of
its key at or before ``t`` (no older than ``tolerance``, if given). So that the answer does
not depend on the order the two sides come in, a record waits until the watermark ``W``
passes ``t + grace`` — from then on a table-side version at or before ``t`` is late — and is
then joined and emitted. Either side's record is **late** when it comes with ``W`` already
past its ``t + grace``; a late version is not applied (it would change answers already
given). Answers then equal those computed from the whole input's versions that were not late.

State: ``"a/<key>"`` → ``[[time, packed], ...]`` sorted by time (equal times: in the order
they came, the last one wins); ``"a~"`` → the waiting records as a heap of ``[time, seq,
key, packed]``; ``"a#"`` → the next ``seq``. A key's old versions are dropped when a version
of it is added: every version older than the latest one at or before ``min(W − grace,
the oldest waiting time)``, which no answer can need any more.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from operator import itemgetter
from typing import Any

from millstream.runtime._joining import NO_TIME, Shard, push_back

__all__ = ["AsofHistory"]

_VERSIONS = "a/"
_WAITING = "a~"
_SEQ = "a#"
_time = itemgetter(0)

class AsofHistory:
    """Versions and waiting records of an as-of join with ``grace_ms`` and
    ``tolerance_ms``."""

    __slots__ = ("grace", "tolerance")

    def __init__(self, grace_ms: int, tolerance_ms: int | None) -> None:
        self.grace = grace_ms
        self.tolerance = tolerance_ms

    def late(self, time_ms: int, watermark: int) -> bool:
        return watermark != NO_TIME and watermark > time_ms + self.grace

    def add_version(self, shard: Shard, key: str, time_ms: int, packed: Any,
                    watermark: int) -> None:
        """Add a table-side version of ``key`` (not late), dropping those no answer needs."""
        name = _VERSIONS + key
        versions = list(shard.get(name) or ())
        versions.insert(bisect_right(versions, time_ms, key=_time), [time_ms, packed])
        needed = watermark - self.grace if watermark != NO_TIME else NO_TIME
        waiting = shard.get(_WAITING)
        if waiting:
            needed = min(needed, waiting[0][0])
        first = bisect_right(versions, needed, key=_time) - 1
        shard[name] = versions[first:] if first > 0 else versions

    def lookup(self, shard: Shard, key: str, time_ms: int) -> tuple[bool, Any]:
        """(found, packed value) of the version of ``key`` for a record at ``time_ms``."""
        versions = shard.get(_VERSIONS + key)
        if not versions:
            return False, None
        at = bisect_right(versions, time_ms, key=_time) - 1
        if at < 0:
            return False, None
        when, packed = versions[at]
        if packed is None:  # a tombstone: from its time on the key has no row
            return False, None
        if self.tolerance is not None and time_ms - when > self.tolerance:
            return False, None
        return True, packed

    def wait(self, shard: Shard, key: str, time_ms: int, packed: Any) -> None:
        """Hold a stream-side record until the watermark passes its time plus grace."""
        seq = shard.get(_SEQ, 0)
        waiting = shard.get(_WAITING)
        if waiting is None:
            waiting = []
        heapq.heappush(waiting, [time_ms, seq, key, packed])
        shard[_WAITING] = waiting
        shard[_SEQ] = seq + 1

    def take(self, shard: Shard, watermark: int) -> list[list[Any]]:
        """Remove and return the waiting records the watermark has released, oldest first,
        as ``[time, seq, key, packed]``; ``put_back`` undoes it (the attempt failed)."""
        waiting = shard.get(_WAITING)
        if not waiting or not watermark > waiting[0][0] + self.grace:
            return []
        limit = watermark - self.grace
        waiting = list(waiting)  # a copy: the stored one stays whole if the attempt fails
        taken = []  # after this (an answer that cannot be encoded, then a retry)
        while waiting and waiting[0][0] < limit:
            taken.append(heapq.heappop(waiting))
        if waiting:
            shard[_WAITING] = waiting
        else:
            del shard[_WAITING]
        return taken

    @staticmethod
    def put_back(shard: Shard, taken: list[list[Any]]) -> None:
        """Make the records ``take`` returned wait again."""
        push_back(shard, _WAITING, taken)

    @staticmethod
    def waiting(shard: Shard) -> int:
        waiting = shard.get(_WAITING)
        return len(waiting) if waiting else 0
