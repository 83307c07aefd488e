"""What each verify process records: one operation per JSON line, flushed as it happens.

Every worker process appends to its own file and flushes after each operation, so a SIGKILL
loses at most the operation in flight (a cut last line is ignored on reading). A send is
written *before* the record is handed to the producer and its acknowledgement after, so a
send without an ack is indeterminate: it may or may not be stored, and is never counted lost.

Assignments, revocations and confirmed commits carry ``t``, the ``time.monotonic()`` of the
moment they were recorded: one clock for every process on the machine, so the checker can
tell a commit confirmed before another member's assignment. A worker that was told to stop
and stopped cleanly writes ``Stopped`` last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Ack", "Assigned", "Commit", "Event", "Fail", "History", "HistoryWriter", "Poll", "Read",
    "Revoked", "Seen", "Send", "Stopped", "decode", "encode", "read_history",
]


@dataclass(frozen=True, slots=True)
class Seen:
    """One record as a consumer or the final reader saw it."""

    partition: int
    offset: int
    value: str


@dataclass(frozen=True, slots=True)
class Send:
    """A producer is about to send ``value`` (unique in the run) with ``key``."""

    value: str
    key: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The send of ``value`` was acknowledged as stored at ``partition``/``offset``."""

    value: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Fail:
    """The send of ``value`` was reported failed (still indeterminate: it may be stored)."""

    value: str
    error: str


@dataclass(frozen=True, slots=True)
class Assigned:
    """The group gave this consumer ``partitions``: a new life for each of them."""

    partitions: tuple[int, ...]
    t: float | None = None


@dataclass(frozen=True, slots=True)
class Revoked:
    """The group took ``partitions`` away from this consumer."""

    partitions: tuple[int, ...]
    t: float | None = None


@dataclass(frozen=True, slots=True)
class Poll:
    """One poll of a group member and the records it returned, in order."""

    records: tuple[Seen, ...]


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit of next offsets (partition → offset) that the backend confirmed."""

    offsets: tuple[tuple[int, int], ...]
    t: float | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """Records returned to the final reader (a fresh consumer outside the group)."""

    records: tuple[Seen, ...]


@dataclass(frozen=True, slots=True)
class Stopped:
    """The process was told to stop and ended its work cleanly (an incarnation run to its
    end): a producer after every pending answer, a consumer after leaving the group."""


Event = Send | Ack | Fail | Assigned | Revoked | Poll | Commit | Read | Stopped


@dataclass(frozen=True, slots=True)
class History:
    """Everything one process recorded; ``process`` names it (role, slot and incarnation)."""

    process: str
    events: tuple[Event, ...]


def _seen(rows: Any) -> tuple[Seen, ...]:
    return tuple(Seen(int(p), int(o), str(v)) for p, o, v in rows)


def _t(body: dict[str, Any]) -> float | None:
    t = body.get("t")
    return None if t is None else float(t)


def encode(event: Event) -> str:
    """One line of JSON (without the newline) for ``event``."""
    body: dict[str, Any]
    match event:
        case Send(value, key):
            body = {"op": "send", "v": value, "k": key}
        case Ack(value, partition, offset):
            body = {"op": "ack", "v": value, "p": partition, "o": offset}
        case Fail(value, error):
            body = {"op": "fail", "v": value, "e": error}
        case Assigned(partitions, t):
            body = {"op": "assigned", "ps": list(partitions), "t": t}
        case Revoked(partitions, t):
            body = {"op": "revoked", "ps": list(partitions), "t": t}
        case Poll(records) | Read(records):
            op = "poll" if isinstance(event, Poll) else "read"
            body = {"op": op, "rs": [[r.partition, r.offset, r.value] for r in records]}
        case Commit(offsets, t):
            body = {"op": "commit", "os": [list(pair) for pair in offsets], "t": t}
        case Stopped():
            body = {"op": "stopped"}
    if body.get("t", 0) is None:
        del body["t"]
    return json.dumps(body, separators=(",", ":"))


def decode(line: str) -> Event:
    """The event of one line written by ``encode``; ``ValueError`` if it is not one."""
    try:
        body = json.loads(line)
        op = body["op"]
        if op == "send":
            return Send(str(body["v"]), str(body["k"]))
        if op == "ack":
            return Ack(str(body["v"]), int(body["p"]), int(body["o"]))
        if op == "fail":
            return Fail(str(body["v"]), str(body["e"]))
        if op == "assigned":
            return Assigned(tuple(int(p) for p in body["ps"]), _t(body))
        if op == "revoked":
            return Revoked(tuple(int(p) for p in body["ps"]), _t(body))
        if op == "poll":
            return Poll(_seen(body["rs"]))
        if op == "read":
            return Read(_seen(body["rs"]))
        if op == "commit":
            return Commit(tuple((int(p), int(o)) for p, o in body["os"]), _t(body))
        if op == "stopped":
            return Stopped()
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a verify history line: {line[:200]!r}") from exc
    raise ValueError(f"unknown operation {op!r} in verify history line {line[:200]!r}")


class HistoryWriter:
    """Appends events to one process's history file, flushing after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, event: Event) -> None:
        self._file.write(encode(event) + "\n")
        self._file.flush()  # to the OS: a SIGKILL of this process cannot lose it any more

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_history(path: Path) -> History:
    """The events in ``path``; the process is named by the file's stem. A last line cut by a
    kill (no newline) is left out; any other bad line raises ``ValueError`` naming the file."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is an operation cut short
    events = []
    for number, line in enumerate(complete, 1):
        if not line:
            continue
        try:
            events.append(decode(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return History(path.stem, tuple(events))
