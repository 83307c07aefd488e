"""Feeding a service's declared table outputs after each of its commits.

The runner sends a table's rows to the table's changelog stream like any output; once a
commit has made them durable (and committed the inputs they came from) the delivery mode
calls ``after_commit`` (a commit listener), which applies what each changelog gained to its
table in batches (``millstream.tables._feed``). ``catch_up`` at start applies whatever a
crash left between a commit and its batch. A shadow's tables are its own
(``shadow_table(name, version)``, fed from its shadow streams), so production's are never
touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from millstream.errors import InvalidRequestError
from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.service._shadow import shadow_table
from millstream.service._table_output import TableOutput
from millstream.streams._base import Streams
from millstream.tables._base import Tables
from millstream.tables._feed import TableFeed

__all__ = ["TableOutputs"]


class TableOutputs:
    """The table outputs of one running service; ``after_commit`` after every commit."""

    def __init__(self, service: str, tables: Sequence[TableOutput], streams: Streams,
                 backend: Tables | None, output_streams: Mapping[str, str],
                 shadow: str | None) -> None:
        self._feeds: list[TableFeed] = []
        if not tables:
            return
        if backend is None:
            raise InvalidRequestError(
                f"service {service!r} writes table(s) {', '.join(t.name for t in tables)} "
                "but was given no tables backend; pass tables=open_tables() (millstream run "
                "and up do)")
        self._feeds = [TableFeed(streams, backend, t.name if shadow is None
                                 else shadow_table(t.name, shadow), output_streams[t.stream],
                                 model=t.model, indexes=t.indexes) for t in tables]

    def __bool__(self) -> bool:
        return bool(self._feeds)

    def catch_up(self) -> None:
        """Apply everything the changelogs hold that the tables do not reflect yet."""
        for feed in self._feeds:
            feed.apply()

    def after_commit(self, offsets: Mapping[StreamPartition, int] | None = None) -> None:
        """A commit made the rows sent so far durable: apply them to the tables (nothing
        once closed: the next start applies them)."""
        backlogs = [(feed, feed.backlog()) for feed in self._feeds]
        if not any(backlog for _, backlog in backlogs):
            return
        fault_point("service.tables.before_apply")
        for feed, backlog in backlogs:
            if backlog:
                feed.apply(until=backlog)

    def close(self) -> None:
        """Close the feeds' readers; idempotent."""
        for feed in self._feeds:
            feed.close()
        self._feeds = []
