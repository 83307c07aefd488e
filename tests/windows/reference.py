"""A reference model of windowed aggregation: the window table, the final results and the
late records a windowed service must produce, computed in plain Python from the whole input.

It shares no code with the runtime. It reads the input as each partition delivers it (in
the order it was sent) and applies the rules of docs/internals/windows-design.md directly:

* a partition's watermark after a record is the largest event time it has seen minus
  ``lateness`` (before its first record there is none);
* a record counts in each of its windows ``[start, end)`` that is still open, i.e. whose
  ``end + grace`` is above the watermark of the records before it; if none is, it is late;
* in the end, a window is closed if the partition's final watermark reached ``end + grace``,
  and gone from the table if it reached ``end + grace + retention``;
* a session ``[first, last + 1)`` takes a record less than ``gap`` from its first or last
  record (merging every open session the record is that close to), is open until the
  watermark reaches ``last + gap + grace``; a record that no open session takes is late if
  a session of its own would already be closed.

Values are aggregated from the records' values in arrival order by plain functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from millstream.streams._partitioner import partition_for_key

__all__ = ["AGGREGATES", "Expected", "Item", "expected_windows"]

#: the plain aggregations the property tests compare, by the runtime's name
AGGREGATES: dict[str, Callable[[list[Any]], Any]] = {
    "Count": len,
    "Sum": sum,
    "Min": min,
    "Max": max,
    "Mean": lambda values: sum(values) / len(values),
    # (for Latest each value is (event time, value): the largest time, the later on a tie)
    "Latest": lambda values: max(enumerate(values), key=lambda iv: (iv[1][0], iv[0]))[1][1],
    "Collect": list,  # arrival order (a session's merged values: its parts by start, then
                      # the record that merged them; a sliding window made from kept
                      # records: by event time, then arrival)
}


@dataclass(frozen=True)
class Item:
    """One input record: its key, event time (ms) and the value aggregated."""

    key: str
    t: int
    value: Any


@dataclass
class Expected:
    #: window-table rows by table key
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (partition, offset) of every late record
    late: list[tuple[int, int]] = field(default_factory=list)
    #: final results (closed windows, expired ones included), sorted by (key, start)
    results: list[dict[str, Any]] = field(default_factory=list)


def _spans(kind: str, size: int, every: int, t: int) -> list[tuple[int, int]]:
    if kind == "tumbling":
        return [(t // size * size, t // size * size + size)]
    # hopping: every start that is a multiple of `every` with start <= t < start + size
    starts = [s for s in range((t - size) // every * every, t + 1, every) if s <= t < s + size]
    return [(s, s + size) for s in starts]


def expected_windows(items: Sequence[Item], *, partitions: int, kind: str, size: int = 0,
                     every: int = 0, gap: int = 0, aggregate: str = "Count",
                     lateness: int = 0, grace: int = 0,
                     retention: int | None = None) -> Expected:
    """What a windowed service must produce for ``items`` sent in this order, keyed by
    ``item.key``, onto a stream of ``partitions`` partitions."""
    by_partition: dict[int, list[Item]] = {}
    for item in items:
        by_partition.setdefault(partition_for_key(item.key.encode(), partitions), []).append(
            item)
    result = Expected()
    fold = AGGREGATES[aggregate]
    for partition, records in sorted(by_partition.items()):
        windows: dict[tuple[str, int], tuple[int, list[Any]]] = {}  # (key, start) → end, values
        wm: int | None = None
        if kind == "session":
            wm = _sessions(records, partition, gap, lateness, grace, windows, result)
        elif kind == "sliding":
            wm = _sliding(records, partition, size, lateness, grace, windows, result)
        else:
            for offset, item in enumerate(records):
                taken = False
                for start, end in _spans(kind, size, every, item.t):
                    if wm is None or end + grace > wm:
                        windows.setdefault((item.key, start), (end, []))[1].append(item.value)
                        taken = True
                if not taken:
                    result.late.append((partition, offset))
                wm = item.t - lateness if wm is None else max(wm, item.t - lateness)
        extra = gap - 1 if kind == "session" else 0
        for (key, start), (end, values) in windows.items():
            closed = wm is not None and end + extra + grace <= wm
            row = {"key": key, "start": start, "end": end, "value": fold(values),
                   "records": len(values), "closed": closed}
            if closed:
                result.results.append(row)
            if closed and retention is not None and end + extra + grace + retention <= wm:
                continue  # expired
            result.table[f"{key}/{start:015d}"] = row
    result.results.sort(key=lambda r: (r["key"], r["start"]))
    return result


def _sessions(records: list[Item], partition: int, gap: int, lateness: int, grace: int,
              windows: dict[tuple[str, int], tuple[int, list[Any]]],
              result: Expected) -> int | None:
    """Session windows of one partition, into ``windows``; returns the final watermark."""
    wm: int | None = None
    # per key, open sessions as [first, last, values]; closed ones go to `windows`
    open_: dict[str, list[list[Any]]] = {}

    def close_passed() -> None:
        for key, sessions in open_.items():
            for s in [s for s in sessions if wm is not None and s[1] + gap + grace <= wm]:
                sessions.remove(s)
                windows[(key, s[0])] = (s[1] + 1, s[2])

    for offset, item in enumerate(records):
        sessions = open_.setdefault(item.key, [])
        near = [s for s in sessions if s[0] - gap < item.t < s[1] + gap]
        if not near and wm is not None and item.t + gap + grace <= wm:
            result.late.append((partition, offset))
            continue
        near.sort(key=lambda s: s[0])
        merged = [min([item.t, *(s[0] for s in near)]), max([item.t, *(s[1] for s in near)]),
                  [v for s in near for v in s[2]] + [item.value]]
        for s in near:
            sessions.remove(s)
        sessions.append(merged)
        if wm is None or item.t - lateness > wm:
            wm = item.t - lateness
            close_passed()
    for key, sessions in open_.items():
        for s in sessions:
            windows[(key, s[0])] = (s[1] + 1, s[2])
    return wm


def _sliding(records: list[Item], partition: int, size: int, lateness: int, grace: int,
             windows: dict[tuple[str, int], tuple[int, list[Any]]],
             result: Expected) -> int | None:
    """Sliding windows of one partition, into ``windows``; returns the final watermark.

    A window ``[s, s + size]`` exists once a record defines it: the one ending at a record,
    the one just after a record once another record falls in it. It is made from every
    accepted record of its key in it, if it is still open then; after that it takes the
    records that come while it is open."""
    wm: int | None = None
    accepted: dict[str, list[tuple[int, Any]]] = {}
    made: dict[tuple[str, int], list[Any]] = {}

    def is_open(start: int) -> bool:
        return wm is None or start + size + 1 + grace > wm

    for offset, item in enumerate(records):
        key, t = item.key, item.t
        if wm is not None and t + size + 1 + grace <= wm:
            result.late.append((partition, offset))
            continue
        for (k, start), values in made.items():  # existing open windows that contain t
            if k == key and start <= t <= start + size and is_open(start):
                values.append(item.value)
        accepted.setdefault(key, []).append((t, item.value))
        mine = accepted[key]
        starts = {t - size}
        if any(t < rt <= t + 1 + size for rt, _ in mine):
            starts.add(t + 1)
        starts |= {rt + 1 for rt, _ in mine if t - size - 1 <= rt < t}
        for start in sorted(starts):
            if (key, start) not in made and is_open(start):
                made[(key, start)] = [v for rt, v in sorted(mine, key=lambda r: r[0])
                                      if start <= rt <= start + size]
        if wm is None or t - lateness > wm:
            wm = t - lateness
    for (key, start), values in made.items():
        windows[(key, start)] = (start + size + 1, values)
    return wm
