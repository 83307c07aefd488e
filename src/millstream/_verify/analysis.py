"""The checker: a pure function from the recorded histories to a verdict.

It trusts nothing but the histories: what producers were told (acknowledged at a position,
failed, or nothing yet), what group members polled and committed, and what a fresh reader
found from the start of every partition afterwards. A run passes when nothing acknowledged or
seen by a consumer is missing, no value is stored twice, no position holds two values (as
acknowledged, polled or read), the final read returned no record twice, nothing unknown is
stored, both a producer and a consumer ran one incarnation to its end, and the group's side
holds (``group``: every stored record polled, nothing backwards or rewound).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from millstream._verify.findings import EXAMPLES, Finding, Position, at, finding
from millstream._verify.group import GroupVerdict, check_group, is_consumer
from millstream._verify.history import Ack, Fail, History, Poll, Read, Send, Stopped

__all__ = ["EXAMPLES", "ROLES", "Finding", "Verdict", "analyse"]

#: The worker roles of a run; each must have run one incarnation to its end.
ROLES = ("producer", "consumer")


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
    polls: int = 0
    commits: int = 0
    lost: Finding = field(default_factory=Finding)
    duplicated: Finding = field(default_factory=Finding)
    conflicting: Finding = field(default_factory=Finding)
    read_twice: Finding = field(default_factory=Finding)
    unexpected: Finding = field(default_factory=Finding)
    backwards: Finding = field(default_factory=Finding)
    rewound: Finding = field(default_factory=Finding)
    skipped: Finding = field(default_factory=Finding)
    undelivered: Finding = field(default_factory=Finding)
    incomplete: Finding = field(default_factory=Finding)

    @property
    def anomalies(self) -> dict[str, Finding]:
        return {"lost": self.lost, "duplicated": self.duplicated,
                "conflicting": self.conflicting, "read_twice": self.read_twice,
                "unexpected": self.unexpected, "backwards": self.backwards,
                "rewound": self.rewound, "skipped": self.skipped,
                "undelivered": self.undelivered, "incomplete": self.incomplete}

    @property
    def passed(self) -> bool:
        return all(f.count == 0 for f in self.anomalies.values())


@dataclass
class _Facts:
    """What the histories say, indexed for the checks."""

    sent: set[str] = field(default_factory=set)
    acks: dict[str, list[tuple[str, Position]]] = field(default_factory=lambda: defaultdict(list))
    failed: set[str] = field(default_factory=set)
    polled: dict[str, list[tuple[str, Position]]] = field(
        default_factory=lambda: defaultdict(list))
    claims: dict[Position, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    stored: list[tuple[Position, str]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)


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
            elif isinstance(event, Poll) and is_consumer(history):
                for r in event.records:
                    pos = (r.partition, r.offset)
                    facts.polled[r.value].append((history.process, pos))
                    facts.claims[pos][r.value].append(f"polled by {history.process}")
            elif isinstance(event, Stopped):
                facts.stopped.add(history.process)
    return facts


def _conflicts(facts: _Facts, stored_at: dict[str, list[Position]]) -> list[str]:
    """Positions claimed to hold two values, and acks of a stored value at an empty position."""
    out = []
    for pos in sorted(facts.claims):
        values = facts.claims[pos]
        if len(values) > 1:
            said = "; ".join(f"{v!r} ({', '.join(sorted(set(by)))})"
                             for v, by in sorted(values.items()))
            out.append(f"{at(pos)} holds two values: {said}")
    read_positions = {pos for pos, _ in facts.stored}
    for value in sorted(facts.acks):
        for process, pos in facts.acks[value]:
            if pos not in read_positions and stored_at.get(value):
                elsewhere = ", ".join(at(p) for p in stored_at[value])
                out.append(f"{value!r} acknowledged to {process} at {at(pos)}, which the "
                           f"final read does not have; it is stored at {elsewhere}")
    return out


def _lost(facts: _Facts, stored_at: dict[str, list[Position]]) -> list[str]:
    out = []
    for value in sorted(set(facts.acks) | set(facts.polled)):
        if value in stored_at:
            continue
        if value in facts.acks:
            process, pos = facts.acks[value][0]
            out.append(f"{value!r} acknowledged to {process} at {at(pos)}, "
                       "absent from the final read")
        else:
            process, pos = facts.polled[value][0]
            out.append(f"{value!r} polled by {process} at {at(pos)} (never acknowledged), "
                       "absent from the final read")
    return out


def _incomplete(histories: Sequence[History], facts: _Facts, group: GroupVerdict) -> list[str]:
    """A role none of whose incarnations ran to its end, and a group that polled nothing."""
    out = []
    for role in ROLES:
        started = [h.process for h in histories if h.process.startswith(f"{role}-")]
        if not facts.stopped & set(started):
            out.append(f"no {role} ran to its end: {len(started)} incarnations recorded, none "
                       "stopped cleanly when told to (each was killed or ended by itself)")
    if group.polls == 0:
        out.append(f"the group polled nothing ({len(facts.stored)} records stored)")
    return out


def analyse(histories: Sequence[History]) -> Verdict:
    """Check ``histories`` (producers', consumers' and the final reader's) and count."""
    facts = _collect(histories)
    times = Counter(facts.stored)
    read_twice = [f"the final read returned {at(pos)} ({v!r}) {n} times"
                  for (pos, v), n in sorted(times.items()) if n > 1]
    stored_at: dict[str, list[Position]] = defaultdict(list)
    for pos, value in sorted(times):
        stored_at[value].append(pos)
    stored_values = set(stored_at)
    acked = set(facts.acks)
    failed = facts.failed - acked
    indeterminate = facts.sent - acked - failed
    duplicated = [f"{v!r} stored at {', '.join(at(p) for p in ps)}"
                  for v, ps in sorted(stored_at.items()) if len(ps) > 1]
    unexpected = [f"{v!r} stored at {at(ps[0])} but never sent"
                  for v, ps in sorted(stored_at.items()) if v not in facts.sent]
    distinct = sorted(times)  # (position, value) once each; a repeat is read_twice
    group = check_group(histories, dict(distinct))
    return Verdict(
        attempted=len(facts.sent), acknowledged=len(acked), failed=len(failed),
        indeterminate=len(indeterminate), stored=len(distinct),
        stored_values=len(stored_values),
        stored_acknowledged=len(acked & stored_values),
        stored_failed=len(failed & stored_values),
        stored_indeterminate=len(indeterminate & stored_values),
        delivered=len({pos for pos, _ in distinct} & group.polled_at),
        polls=group.polls, commits=group.commits,
        lost=finding(_lost(facts, stored_at)),
        duplicated=finding(duplicated),
        conflicting=finding(_conflicts(facts, stored_at)),
        read_twice=finding(read_twice),
        unexpected=finding(unexpected),
        backwards=group.backwards, rewound=group.rewound, skipped=group.skipped,
        undelivered=group.undelivered,
        incomplete=finding(_incomplete(histories, facts, group)),
    )
