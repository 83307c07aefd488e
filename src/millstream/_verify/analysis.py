"""The checker: a pure function from the recorded histories to a verdict.

It trusts nothing but the histories: what producers were told (acknowledged at a position,
failed, or nothing yet), what group members polled and committed, and what a fresh reader
found from the start of every partition afterwards. A run passes when nothing acknowledged or
seen by a consumer is missing, no value is stored twice, no position holds two values, no
consumer saw its offsets go backwards within one assignment of a partition, nothing unknown is
stored, and the group skipped nothing below an offset it committed (at-least-once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from millstream._verify.history import (
    Ack,
    Assigned,
    Commit,
    Fail,
    History,
    Poll,
    Read,
    Revoked,
    Send,
)

__all__ = ["EXAMPLES", "Finding", "Verdict", "analyse"]

#: How many examples a finding keeps.
EXAMPLES = 3

Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Finding:
    """How often one anomaly occurred, and the first few occurrences in words."""

    count: int = 0
    examples: tuple[str, ...] = ()


def _finding(items: Iterable[str]) -> Finding:
    listed = list(items)
    return Finding(len(listed), tuple(listed[:EXAMPLES]))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The accounting of a run and its anomalies; ``passed`` when there are none."""

    attempted: int = 0
    acknowledged: int = 0
    failed: int = 0
    indeterminate: int = 0
    stored: int = 0
    stored_values: int = 0
    stored_acknowledged: int = 0
    stored_failed: int = 0
    stored_indeterminate: int = 0
    delivered: int = 0
    never_delivered: int = 0
    commits: int = 0
    lost: Finding = field(default_factory=Finding)
    duplicated: Finding = field(default_factory=Finding)
    conflicting: Finding = field(default_factory=Finding)
    backwards: Finding = field(default_factory=Finding)
    unexpected: Finding = field(default_factory=Finding)
    skipped: Finding = field(default_factory=Finding)

    @property
    def anomalies(self) -> dict[str, Finding]:
        return {"lost": self.lost, "duplicated": self.duplicated,
                "conflicting": self.conflicting, "backwards": self.backwards,
                "unexpected": self.unexpected, "skipped": self.skipped}

    @property
    def passed(self) -> bool:
        return all(f.count == 0 for f in self.anomalies.values())


def _at(position: Position) -> str:
    return f"{position[0]}@{position[1]}"


@dataclass
class _Facts:
    """What the histories say, indexed for the checks."""

    sent: set[str] = field(default_factory=set)
    acks: dict[str, list[tuple[str, Position]]] = field(default_factory=lambda: defaultdict(list))
    failed: set[str] = field(default_factory=set)
    polled: dict[str, list[tuple[str, Position]]] = field(
        default_factory=lambda: defaultdict(list))
    polled_at: set[Position] = field(default_factory=set)
    claims: dict[Position, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    stored: list[tuple[Position, str]] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    commits: int = 0
    backwards: list[str] = field(default_factory=list)


def _consumer(history: History, facts: _Facts) -> None:
    """Polls, commits and the offsets-only-increase check of one group member."""
    last: dict[int, int] = {}  # partition → last offset polled in its current assignment
    for event in history.events:
        if isinstance(event, Assigned | Revoked):
            for p in event.partitions:
                last.pop(p, None)
        elif isinstance(event, Poll):
            for r in event.records:
                pos = (r.partition, r.offset)
                before = last.get(r.partition)
                if before is not None and r.offset <= before:
                    facts.backwards.append(
                        f"{history.process} polled partition {r.partition} offset {r.offset} "
                        f"after offset {before} in the same assignment")
                last[r.partition] = r.offset
                facts.polled[r.value].append((history.process, pos))
                facts.polled_at.add(pos)
                facts.claims[pos][r.value].append(f"polled by {history.process}")
        elif isinstance(event, Commit):
            facts.commits += 1
            for p, offset in event.offsets:
                facts.committed[p] = max(facts.committed.get(p, 0), offset)


def _collect(histories: Sequence[History]) -> _Facts:
    facts = _Facts()
    for history in histories:
        for event in history.events:
            if isinstance(event, Send):
                facts.sent.add(event.value)
            elif isinstance(event, Ack):
                pos = (event.partition, event.offset)
                facts.acks[event.value].append((history.process, pos))
                facts.claims[pos][event.value].append(f"acknowledged to {history.process}")
            elif isinstance(event, Fail):
                facts.failed.add(event.value)
            elif isinstance(event, Read):
                for r in event.records:
                    pos = (r.partition, r.offset)
                    facts.stored.append((pos, r.value))
                    facts.claims[pos][r.value].append("in the final read")
        _consumer(history, facts)
    return facts


def _conflicts(facts: _Facts, stored_at: dict[str, list[Position]]) -> list[str]:
    """Positions claimed to hold two values, and acks of a stored value at an empty position."""
    out = []
    for pos in sorted(facts.claims):
        values = facts.claims[pos]
        if len(values) > 1:
            said = "; ".join(f"{v!r} ({', '.join(sorted(set(by)))})"
                             for v, by in sorted(values.items()))
            out.append(f"{_at(pos)} holds two values: {said}")
    read_positions = {pos for pos, _ in facts.stored}
    for value in sorted(facts.acks):
        for process, pos in facts.acks[value]:
            if pos not in read_positions and stored_at.get(value):
                elsewhere = ", ".join(_at(p) for p in stored_at[value])
                out.append(f"{value!r} acknowledged to {process} at {_at(pos)}, which the "
                           f"final read does not have; it is stored at {elsewhere}")
    return out


def _lost(facts: _Facts, stored_at: dict[str, list[Position]]) -> list[str]:
    out = []
    for value in sorted(set(facts.acks) | set(facts.polled)):
        if value in stored_at:
            continue
        if value in facts.acks:
            process, pos = facts.acks[value][0]
            out.append(f"{value!r} acknowledged to {process} at {_at(pos)}, "
                       "absent from the final read")
        else:
            process, pos = facts.polled[value][0]
            out.append(f"{value!r} polled by {process} at {_at(pos)} (never acknowledged), "
                       "absent from the final read")
    return out


def analyse(histories: Sequence[History]) -> Verdict:
    """Check ``histories`` (producers', consumers' and the final reader's) and count."""
    facts = _collect(histories)
    stored_at: dict[str, list[Position]] = defaultdict(list)
    for pos, value in sorted(facts.stored):
        if pos not in stored_at[value]:
            stored_at[value].append(pos)
    stored_values = set(stored_at)
    acked = set(facts.acks)
    failed = facts.failed - acked
    indeterminate = facts.sent - acked - failed
    duplicated = [f"{v!r} stored at {', '.join(_at(p) for p in ps)}"
                  for v, ps in sorted(stored_at.items()) if len(ps) > 1]
    unexpected = [f"{v!r} stored at {_at(ps[0])} but never sent"
                  for v, ps in sorted(stored_at.items()) if v not in facts.sent]
    unseen = sorted({(pos, v) for pos, v in facts.stored if pos not in facts.polled_at})
    skipped = [f"{v!r} at {_at(pos)} was never polled, yet the group committed offset "
               f"{facts.committed[pos[0]]} on partition {pos[0]}"
               for pos, v in unseen if pos[1] < facts.committed.get(pos[0], 0)]
    return Verdict(
        attempted=len(facts.sent), acknowledged=len(acked), failed=len(failed),
        indeterminate=len(indeterminate), stored=len(facts.stored),
        stored_values=len(stored_values),
        stored_acknowledged=len(acked & stored_values),
        stored_failed=len(failed & stored_values),
        stored_indeterminate=len(indeterminate & stored_values),
        delivered=len({pos for pos, _ in facts.stored} & facts.polled_at),
        never_delivered=len(unseen), commits=facts.commits,
        lost=_finding(_lost(facts, stored_at)),
        duplicated=_finding(duplicated),
        conflicting=_finding(_conflicts(facts, stored_at)),
        backwards=_finding(facts.backwards),
        unexpected=_finding(unexpected),
        skipped=_finding(skipped),
    )
