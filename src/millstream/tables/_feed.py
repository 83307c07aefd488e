"""A table fed in batches by whoever writes its stream: the applier behind a table output.

A service that declares a table output writes the table's rows to the table's stream (its
changelog); after each of the service's commits the runtime calls ``TableFeed.apply``,
which reads what the stream gained since and applies it in batches (the rule is
``_changes``), each in one table transaction together with the stream offsets it reaches.
The table therefore always equals its stream replayed up to the offsets stored with it, and
a crash anywhere — before, during or after a batch — leaves it so: the next ``apply``
continues from the stored offsets.

Several feeds may serve one table (the instances of a service, a restore under a running
one): a batch is written only if the table's stored offsets are where the batch begins,
checked inside the transaction, which the backends serialize per table. A feed that finds
them elsewhere writes nothing, moves its reader there and reads again. So no record is
applied twice or skipped, whichever feed applies it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from millstream.codecs import ModelCodec
from millstream.errors import InvalidRequestError
from millstream.faults import fault_point
from millstream.records import Headers, Record, StreamPartition
from millstream.streams._base import Consumer, Streams
from millstream.tables._base import Table, Tables
from millstream.tables._changes import KeyFunction, changes_of
from millstream.tables._materialize import (
    MaterializerStatistics,
    check_replayable,
    open_reader,
)

__all__ = ["TableFeed"]

log = logging.getLogger(__name__)
_POLL = 5000  # records per poll; a batch gathers up to batch_size


class TableFeed:
    """Applies the records ``stream`` gains to ``table`` (created if missing, with
    ``indexes``), in batches of up to ``batch_size``.

    ``key(record)`` gives a document's key (default: the record key as UTF-8); ``model``
    validates every document but those the runtime wrote with ``model``'s codec (its
    headers say so), which are only checked to be JSON objects. Use it with ``with`` or call
    ``close()``; the streams and tables handles stay the caller's.
    """

    def __init__(self, streams: Streams, tables: Tables, table: str, stream: str, *,
                 key: KeyFunction | None = None, model: type[BaseModel] | None = None,
                 indexes: Sequence[str] = (), batch_size: int = 20_000) -> None:
        if batch_size < 1:
            raise InvalidRequestError(f"batch_size={batch_size} must be ≥ 1")
        self.table: Table = tables.ensure_table(table, indexes=indexes)
        self.stream = stream
        self._streams = streams
        self._key = key
        self._model = model
        #: the headers of rows the runtime wrote with ``model``'s codec: not validated again
        self._written_by: Headers = ModelCodec(model).headers if model is not None else ()
        self._batch_size = batch_size
        self._consumer: Consumer | None = None
        #: where the table's stored offsets are, as far as this feed knows: its next batch
        #: is written only if they still are
        self._at: dict[StreamPartition, int] = {}
        self._stats = MaterializerStatistics()

    def _open(self) -> Consumer:
        if self._consumer is not None:
            return self._consumer
        consumer, start, _ = open_reader(self._streams, self.table, self.stream)
        self._consumer = consumer
        self._at = start
        return consumer

    def backlog(self) -> dict[StreamPartition, int]:
        """The stream's end offset in each partition where this feed has records to read
        (empty when it has none)."""
        consumer = self._open()
        # the admin's answer, not the reader's lag(): a Kafka reader's offset queries wait
        # behind its own fetches (up to fetch.wait.max.ms each, 0.5 s), the admin's do not
        info = self._streams.admin().describe_stream(self.stream)
        ends = {StreamPartition(self.stream, p.partition): p.end for p in info.partitions}
        return {sp: end for sp, end in ends.items() if consumer.position(sp) < end}

    def apply(self, timeout: float = 10.0, *,
              until: Mapping[StreamPartition, int] | None = None) -> int:
        """Apply every record the stream holds at the call (or up to the ends ``until``, a
        ``backlog()``), in batches; return how many this feed applied. Waits up to
        ``timeout`` s for records the stream holds but the reader has not received yet; what
        is left then goes with the next call."""
        consumer = self._open()
        ends = dict(self.backlog() if until is None else until)
        applied = 0
        deadline = time.monotonic() + timeout
        while any(consumer.position(sp) < end for sp, end in ends.items()):
            left = deadline - time.monotonic()
            records = consumer.poll(min(self._batch_size, _POLL), max(min(left, 0.2), 0))
            while records and len(records) < self._batch_size and any(
                    consumer.position(sp) < end for sp, end in ends.items()):
                more = consumer.poll(min(self._batch_size - len(records), _POLL), 0)
                if not more:
                    break
                records.extend(more)
            if records:
                applied += self._write(consumer, records)
            elif left <= 0:
                log.info("table %s: records of %s up to %s not received within %s s; the "
                         "next batch applies them", self.table.name, self.stream, ends, timeout)
                break
        return applied

    def _write(self, consumer: Consumer, records: list[Record]) -> int:
        changes = changes_of(self.table.name, records, key=self._key, model=self._model,
                             written_by=self._written_by)
        reached = {sp: consumer.position(sp) for sp in self._at}
        moved: dict[StreamPartition, int] | None = None
        with self.table.transaction() as tx:  # serialized per table: the check holds
            stored = tx.offsets()
            now = {sp: stored.get(sp, 0) for sp in self._at}
            if now != self._at:
                moved = now
            else:
                tx.put_json(changes.puts)
                tx.delete_many(changes.deletes)
                tx.set_offsets(reached)
                fault_point("tables.feed.before_commit")
        if moved is not None:  # another feed (or a restore) wrote the table: read from there
            log.info("table %s: its offsets moved to %s under this feed; reading from there",
                     self.table.name, moved)
            for sp, offset in check_replayable(self._streams.admin(), self.table.name,
                                               self.stream, moved).items():
                consumer.seek(sp, offset)
            self._at = {sp: consumer.position(sp) for sp in self._at}
            return 0
        fault_point("tables.feed.after_commit")
        self._at = reached
        s = self._stats
        self._stats = MaterializerStatistics(
            s.batches + 1, s.records + len(records), s.upserts + len(changes.puts),
            s.deletes + len(changes.deletes), s.skipped + changes.skipped, dict(reached))
        return len(records)

    def statistics(self) -> MaterializerStatistics:
        """What this feed has applied since it was created."""
        return self._stats

    def close(self) -> None:
        """Close the reader; idempotent."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> TableFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
