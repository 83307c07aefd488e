"""The reference model of the joins: what each join must output, computed from the whole input.

Plain functions with no buffers, heaps or expiry — the definitions the runtime's operators
(``millstream.runtime._joining_operators``) must meet, written as directly as possible:

* ``table_join``: each stream-side record with the last table-side record of its key before
  it (in the order the shard handles them);
* ``interval_join``: every pair of records of one key, one per side, neither of them late,
  whose times are at most ``within`` apart; for a left (outer) join also each left (each)
  record that is not late, has no such partner, and whose time + 2·within + grace the final
  watermark passed, alone;
* ``asof_join``: each stream-side record that is not late and that the final watermark
  released, with the latest table-side version of its key at or before its time (the last one
  handled among equal times) that is not late, within ``tolerance``.

An ``Event`` is one input record; a shard (a partition number) handles its events in the
order given. Lateness is a property of that order: a record is late when the watermark —
the smaller of the largest times seen on each input of its shard before it (none until both
inputs have shown one), minus ``lateness`` — has passed its time plus ``within + grace``
(interval join) or ``grace`` (as-of). The final watermark is the smaller of each input's
largest time, minus ``lateness`` (none if an input has no record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Event", "asof_join", "interval_join", "none_last", "table_join"]

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


def _watermark(largest: dict[str, int], lateness: int) -> int | None:
    """The smaller of the inputs' largest times, minus ``lateness``; None until both have
    one."""
    return min(largest.values()) - lateness if len(largest) == 2 else None


def _on_time(events: list[Event], lateness: int, allowed: int) -> tuple[list[Event],
                                                                          list[Event]]:
    """(not late, late) of one shard's events: late when the watermark before it passed its
    time + ``allowed``."""
    on_time, late = [], []
    largest: dict[str, int] = {}
    for event in events:
        mark = _watermark(largest, lateness)
        if mark is not None and mark > event.time + allowed:
            late.append(event)
        else:
            on_time.append(event)
        largest[event.side] = max(largest.get(event.side, event.time), event.time)
    return on_time, late


def _final(events: list[Event], lateness: int) -> int | None:
    """The watermark after all of one shard's events."""
    largest: dict[str, int] = {}
    for event in events:
        largest[event.side] = max(largest.get(event.side, event.time), event.time)
    return _watermark(largest, lateness)


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


def none_last(item: tuple[str, int | None, int | None]) -> tuple[str, int, int]:
    return item[0], -1 if item[1] is None else item[1], -1 if item[2] is None else item[2]


def interval_join(events: Iterable[Event], partition: Callable[[str], int], *, within: int,
                  grace: int, lateness: int, how: str = "inner",
                  ) -> tuple[list[tuple[str, int | None, int | None]], list[Event]]:
    """(sorted (key, left id or None, right id or None) outputs, the late events in order of
    shard)."""
    out: list[tuple[str, int | None, int | None]] = []
    late_all: list[Event] = []
    alone = {"inner": (), "left": (LEFT,), "outer": (LEFT, RIGHT)}[how]
    for _, shard in sorted(_shards(events, partition).items()):
        on_time, late = _on_time(shard, lateness, within + grace)
        late_all += late
        lefts = [e for e in on_time if e.side == LEFT]
        rights = [e for e in on_time if e.side == RIGHT]
        out += [(a.key, a.id, b.id) for a in lefts for b in rights
                if a.key == b.key and abs(a.time - b.time) <= within]
        final = _final(shard, lateness)
        for event in on_time:
            others = rights if event.side == LEFT else lefts
            if (event.side in alone and final is not None
                    and final > event.time + 2 * within + grace
                    and not any(o.key == event.key and abs(o.time - event.time) <= within
                                for o in others)):
                out.append((event.key, event.id, None) if event.side == LEFT
                           else (event.key, None, event.id))
    return sorted(out, key=none_last), late_all


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
        final = _final(shard, lateness)
        versions = [(i, e) for i, e in enumerate(on_time) if e.side == RIGHT]
        for event in on_time:
            if event.side != LEFT:
                continue
            if final is None or not final > event.time + grace:
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
