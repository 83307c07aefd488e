"""The exceptions stream read for the console's Exceptions page, bounded: the newest
``MAX_SCAN`` exception records summed up, filtered by service, stage and error type, and
which of them were replayed (``operations/_replay``, the same as ``millstream exceptions``).

A summary keeps what a row shows (never the input value or the traceback), so a scan of
100,000 records holds little; one exception is read whole by its id for its own page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from millstream._wellknown import EXCEPTIONS
from millstream.console._limits import MAX_SCAN
from millstream.errors import NotFoundError
from millstream.operations._replay import replays
from millstream.runtime._failures import ExceptionRecord, parse_exception
from millstream.service._shadow import is_shadow
from millstream.streams._base import Streams
from millstream.streams._reading import read_to_end

__all__ = ["Filter", "Scan", "Summary", "read_one", "replayed_in", "scan"]

_MESSAGE = 300  # characters of an error message a row shows


@dataclass(frozen=True, slots=True)
class Summary:
    """One exception as a row of the list shows it."""

    id: int
    time_ms: int
    service: str
    group: str
    shadow: str  # the shadow version, "" for production
    stage: str
    error_type: str
    message: str
    attempts: int
    reported: bool
    input: str  # stream[partition]@offset
    replay_of: int | None

    @property
    def short_type(self) -> str:
        """The error's class name without its module: ``KeyError``."""
        return self.error_type.rpartition(".")[2]


def summary(failure: ExceptionRecord) -> Summary:
    doc = failure.document
    message = failure.message
    if len(message) > _MESSAGE:
        message = message[:_MESSAGE - 1] + "…"
    replay_of = doc.get("replay_of")
    where = failure.input
    return Summary(
        failure.id, int(doc.get("time_ms", 0)), failure.service, failure.group,
        str(doc.get("version", "")) if is_shadow(failure.group) else "", failure.stage,
        failure.error_type, message, failure.attempts, failure.reported,
        f"{where.get('stream')}[{where.get('partition')}]@{where.get('offset')}",
        replay_of if isinstance(replay_of, int) else None)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which exceptions: by service, stage and error type (full ``module.Class``); an empty
    field matches all."""

    service: str = ""
    stage: str = ""
    error_type: str = ""

    def matches(self, s: Summary) -> bool:
        return ((not self.service or s.service == self.service)
                and (not self.stage or s.stage == self.stage)
                and (not self.error_type or s.error_type == self.error_type))

    @property
    def empty(self) -> bool:
        return not (self.service or self.stage or self.error_type)

    def query(self) -> str:
        """As a URL's query: ``service=billing&stage=handle``."""
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in (("service", self.service), ("stage", self.stage),
                                             ("type", self.error_type)) if v})


@dataclass(frozen=True, slots=True)
class Scan:
    """What the page lists: ``summaries`` (oldest first) of the exceptions read, ``total``
    records in the stream, ``older`` how many of them (the oldest) the bounded scan left
    unread."""

    summaries: tuple[Summary, ...]
    total: int
    older: int

    def facets(self) -> dict[str, list[tuple[str, int]]]:
        """Each filter's values with how many exceptions have them, most first (then by
        name)."""
        return {name: sorted(Counter(getattr(s, attr) for s in self.summaries).items(),
                             key=lambda item: (-item[1], item[0]))
                for name, attr in (("service", "service"), ("stage", "stage"),
                                   ("type", "error_type"))}

    def matching(self, chosen: Filter) -> list[Summary]:
        return [s for s in self.summaries if chosen.matches(s)]


def scan(streams: Streams, *, max_scan: int = MAX_SCAN) -> Scan:
    """The newest ``max_scan`` records of the exceptions stream, summed up (none when no
    service has failed yet: the stream does not exist)."""
    admin = streams.admin()
    if EXCEPTIONS not in admin.list_streams():
        return Scan((), 0, 0)
    info = admin.describe_stream(EXCEPTIONS)
    start, end = min(p.start for p in info.partitions), max(p.end for p in info.partitions)
    first = max(start, end - max_scan)
    found = []
    for record in read_to_end(streams, EXCEPTIONS, start=first, timeout_s=30.0):
        failure = parse_exception(record)
        if failure is not None:
            found.append(summary(failure))
    found.sort(key=lambda s: s.id)
    return Scan(tuple(found), info.records, first - start)


def read_many(streams: Streams, ids: Sequence[int]) -> list[ExceptionRecord]:
    """The exceptions ``ids``, oldest first: a read of the offsets from the first id to the
    last only (never the whole stream)."""
    wanted = set(ids)
    if not wanted:
        return []
    found = []
    for record in read_to_end(streams, EXCEPTIONS, start=min(wanted), stop=max(wanted) + 1):
        if record.offset in wanted:
            failure = parse_exception(record)
            if failure is not None:
                found.append(failure)
    return found


def read_one(streams: Streams, ident: int) -> ExceptionRecord:
    """The exception ``ident`` whole; ``NotFoundError`` naming the ids there are."""
    if EXCEPTIONS in streams.admin().list_streams():
        info = streams.admin().describe_stream(EXCEPTIONS)
        for part in info.partitions:
            if part.start <= ident < part.end:
                for record in read_to_end(streams, EXCEPTIONS, start=ident, stop=ident + 1):
                    failure = parse_exception(record)
                    if failure is not None and failure.id == ident:
                        return failure
        kept = ", ".join(f"{p.start} to {p.end - 1}" for p in info.partitions if p.end > p.start)
        if kept:
            raise NotFoundError(f"there is no exception {ident}: the exceptions stream holds "
                                f"ids {kept}")
    raise NotFoundError(f"there is no exception {ident}: no service has failed yet")


def replayed_in(streams: Streams, groups: Iterable[str]) -> dict[str, dict[int, int]]:
    """For each group: the ids replayed to it and where each went in its retry stream (read
    from its newest ``MAX_SCAN`` records: an older replay is not shown as one)."""
    return {group: replays(streams, group, last=MAX_SCAN) for group in sorted(set(groups))
            if group}
