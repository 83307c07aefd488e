"""The reference model of the joins: what each join must output, computed from the whole input.

Plain functions with no buffers, heaps or expiry — the definitions the runtime's operators
(``millstream.runtime._joining_operators``) must meet, written as directly as possible:

* ``table_join``: each stream-side record with the last table-side record of its key before
  it (in the order the shard handles them);
* ``interval_join``: every pair of records of one key, one per side, neither of them late,
  whose times are at most ``within`` apart;
* ``asof_join``: each stream-side record that is not late and that the final watermark
  released, with the latest table-side version of its key at or before its time (the last one
  handled among equal times) that is not late, within ``tolerance``.

An ``Event`` is one input record; a shard (a partition number) handles its events in the
order given. Lateness is a property of that order: a record is late when the watermark —
the largest time seen on its shard before it, minus ``lateness`` — has passed its time plus
``within + grace`` (interval join) or ``grace`` (as-of).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Event", "asof_join", "interval_join", "table_join"]

LEFT, RIGHT = "left", "right"


@dataclass(frozen=True)
class Event:
    """One input record: its side, key, event time (ms) and id (what outputs name)."""

    side: str
    key: str
    time: int
    id: int


def _shards(events: Iterable[Event], partition: Callable[[str], int]) -> dict[int, list[Event]]:
    shards: dict[int, list[Event]] = {}
    for event in events:
        shards.setdefault(partition(event.key), []).append(event)
    return shards


def _on_time(events: list[Event], lateness: int, allowed: int) -> tuple[list[Event],
                                                                          list[Event]]:
    """(not late, late) of one shard's events: late when the watermark before it passed its
    time + ``allowed``."""
    on_time, late = [], []
    largest: int | None = None
    for event in events:
        if largest is not None and largest - lateness > event.time + allowed:
            late.append(event)
        else:
            on_time.append(event)
        largest = event.time if largest is None else max(largest, event.time)
    return on_time, late


def table_join(events: Iterable[Event], *, inner: bool = False
               ) -> list[tuple[str, int, int | None]]:
    """(key, stream id, row id or None) for each stream-side event, in order."""
    rows: dict[str, int] = {}
    out: list[tuple[str, int, int | None]] = []
    for event in events:
        if event.side == RIGHT:
            rows[event.key] = event.id
        elif event.key in rows or not inner:
            out.append((event.key, event.id, rows.get(event.key)))
    return out


def interval_join(events: Iterable[Event], partition: Callable[[str], int], *, within: int,
                  grace: int, lateness: int) -> tuple[list[tuple[str, int, int]], list[Event]]:
    """(sorted (key, left id, right id) pairs, the late events in order of shard)."""
    pairs: list[tuple[str, int, int]] = []
    late_all: list[Event] = []
    for _, shard in sorted(_shards(events, partition).items()):
        on_time, late = _on_time(shard, lateness, within + grace)
        late_all += late
        lefts = [e for e in on_time if e.side == LEFT]
        rights = [e for e in on_time if e.side == RIGHT]
        pairs += [(a.key, a.id, b.id) for a in lefts for b in rights
                  if a.key == b.key and abs(a.time - b.time) <= within]
    return sorted(pairs), late_all


def asof_join(events: Iterable[Event], partition: Callable[[str], int], *, grace: int,
              lateness: int, tolerance: int | None = None, inner: bool = False,
              ) -> tuple[list[tuple[str, int, int | None]], list[Event], list[Event]]:
    """(sorted (key, stream id, version id or None) answers, the late events, the stream-side
    events still waiting for the watermark at the end)."""
    answers: list[tuple[str, int, int | None]] = []
    late_all: list[Event] = []
    waiting: list[Event] = []
    for _, shard in sorted(_shards(events, partition).items()):
        on_time, late = _on_time(shard, lateness, grace)
        late_all += late
        final = max(e.time for e in shard) - lateness
        versions = [(i, e) for i, e in enumerate(on_time) if e.side == RIGHT]
        for event in on_time:
            if event.side != LEFT:
                continue
            if not final > event.time + grace:
                waiting.append(event)
                continue
            candidates = [(v.time, i, v) for i, v in versions
                          if v.key == event.key and v.time <= event.time
                          and (tolerance is None or event.time - v.time <= tolerance)]
            best = max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None
            if best is None and inner:
                continue
            answers.append((event.key, event.id, best.id if best else None))
    return sorted(answers, key=lambda a: (a[0], a[1], -1 if a[2] is None else a[2])), \
        late_all, waiting
