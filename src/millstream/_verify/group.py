"""The consumer group's side of the verify check, from the group members' histories.

Each member's polls are walked in order. Within one assignment of a partition its offsets must
only increase (``backwards``). The first poll of a partition after an assignment must not start
below an offset whose commit the group confirmed before that assignment (``rewound``): commits
and assignments carry ``time.monotonic()`` stamps, one clock for every process on the machine.
The run lets the group drain to the end of every partition before stopping it, so every stored
record must have been polled: one never polled below a committed offset was ``skipped``, any
other is ``undelivered``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from millstream._verify.findings import Finding, Position, at, finding
from millstream._verify.history import Assigned, Commit, History, Poll, Revoked

__all__ = ["GroupVerdict", "check_group", "is_consumer"]


def is_consumer(history: History) -> bool:
    return history.process.startswith("consumer-")


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """What the group polled and committed, and its anomalies."""

    polls: int
    polled_at: frozenset[Position]
    commits: int
    backwards: Finding
    rewound: Finding
    skipped: Finding
    undelivered: Finding


class _Commits:
    """Confirmed commits per partition, in time order, for "committed before time t"."""

    def __init__(self, histories: Sequence[History]) -> None:
        stamped: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self.highest: dict[int, int] = {}
        self.count = 0
        for history in histories:
            for event in history.events:
                if not isinstance(event, Commit):
                    continue
                self.count += 1
                for p, offset in event.offsets:
                    self.highest[p] = max(self.highest.get(p, 0), offset)
                    if event.t is not None:
                        stamped[p].append((event.t, offset))
        self._times: dict[int, list[float]] = {}
        self._floors: dict[int, list[int]] = {}
        for p, pairs in stamped.items():
            pairs.sort()
            floors, top = [], 0
            for _, offset in pairs:
                top = max(top, offset)
                floors.append(top)
            self._times[p], self._floors[p] = [t for t, _ in pairs], floors

    def before(self, partition: int, t: float) -> int:
        """The highest offset committed on ``partition`` and confirmed before ``t`` (0 if
        none)."""
        i = bisect.bisect_left(self._times.get(partition, []), t)
        return self._floors[partition][i - 1] if i else 0


def _walk(history: History, commits: _Commits, backwards: list[str], rewound: list[str],
          polled_at: set[Position]) -> int:
    """Check one member's polls in order; return how many polls it made."""
    last: dict[int, int] = {}  # partition → last offset polled in its current assignment
    first: dict[int, tuple[int, float]] = {}  # partition → (floor, assignment time)
    polls = 0
    for event in history.events:
        if isinstance(event, Assigned | Revoked):
            for p in event.partitions:
                last.pop(p, None)
                first.pop(p, None)
                if isinstance(event, Assigned) and event.t is not None:
                    first[p] = (commits.before(p, event.t), event.t)
        elif isinstance(event, Poll):
            polls += 1
            for r in event.records:
                polled_at.add((r.partition, r.offset))
                if r.partition in first:
                    floor, _ = first.pop(r.partition)
                    if r.offset < floor:
                        rewound.append(
                            f"{history.process} started partition {r.partition} at offset "
                            f"{r.offset} after its assignment, below offset {floor} the group "
                            "had committed before it")
                before = last.get(r.partition)
                if before is not None and r.offset <= before:
                    backwards.append(
                        f"{history.process} polled partition {r.partition} offset {r.offset} "
                        f"after offset {before} in the same assignment")
                last[r.partition] = r.offset
    return polls


def check_group(histories: Sequence[History], stored: Mapping[Position, str]) -> GroupVerdict:
    """Check the members among ``histories`` against the final read's ``stored`` records."""
    members = [h for h in histories if is_consumer(h)]
    commits = _Commits(members)
    backwards: list[str] = []
    rewound: list[str] = []
    polled_at: set[Position] = set()
    polls = sum(_walk(h, commits, backwards, rewound, polled_at) for h in members)
    skipped, undelivered = [], []
    for pos in sorted(set(stored) - polled_at):
        value, committed = stored[pos], commits.highest.get(pos[0], 0)
        if pos[1] < committed:
            skipped.append(f"{value!r} at {at(pos)} was never polled, yet the group committed "
                           f"offset {committed} on partition {pos[0]}")
        else:
            undelivered.append(f"{value!r} at {at(pos)} was never polled by the group, which "
                               "was given time to read to the end of every partition")
    return GroupVerdict(polls, frozenset(polled_at), commits.count, finding(backwards),
                        finding(rewound), finding(skipped), finding(undelivered))
