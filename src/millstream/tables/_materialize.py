"""The materializer: a table fed from a stream, and rebuilding a table by replaying it.

Each record upserts the document at its key (the record key as UTF-8 by default); a
tombstone (value ``None``) deletes it (the rule is ``_changes``). Records are applied in
batches, one transaction each, and the stream offsets the table then reflects are written
in that same transaction — in the table backend, not in a consumer group. After any crash
the table therefore equals its stream replayed up to the stored offsets, and the next run
continues from there.

A value that is not a JSON object (or does not validate as ``model``) is skipped, logged and
counted; a replay skips it the same way, so the table still equals the replay. A service
feeds a table it declares as an output through ``_feed.TableFeed`` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from millstream.errors import (
    FencedError,
    InvalidRequestError,
    NotFoundError,
    OffsetOutOfRangeError,
)
from millstream.faults import fault_point
from millstream.records import StreamPartition
from millstream.streams._base import Admin, Consumer, Streams
from millstream.tables._base import Table, TableInfo, Tables
from millstream.tables._changes import KeyFunction, changes_of

__all__ = ["Materializer", "MaterializerStatistics", "Progress", "check_replayable",
           "open_reader", "rebuild"]

log = logging.getLogger(__name__)
_POLL = 5000  # records per poll; a batch (one transaction) gathers up to batch_size

#: ``progress(done, total)``: records (offsets) replayed so far, of those to replay.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class MaterializerStatistics:
    """What a materializer has done since it was created."""

    batches: int = 0
    records: int = 0
    upserts: int = 0
    deletes: int = 0
    skipped: int = 0
    offsets: Mapping[StreamPartition, int] = field(default_factory=dict)


def check_replayable(admin: Admin, table: str, stream: str,
                     offsets: Mapping[StreamPartition, int]) -> dict[StreamPartition, int]:
    """The offset to read each partition of ``stream`` from (stored, else 0), after checking
    the stream still holds every record from there; ``OffsetOutOfRangeError`` naming the
    retention if not."""
    info = admin.describe_stream(stream)
    start_at = {}
    for p in info.partitions:
        sp = StreamPartition(stream, p.partition)
        need = offsets.get(sp, 0)
        if need < p.start:
            raise OffsetOutOfRangeError(
                f"table {table!r} needs {sp} from offset {need}, but the stream's retention "
                f"({info.retention.describe()}) has removed records before {p.start}; the "
                "table cannot be rebuilt or continued from its stream. Restore a snapshot "
                "taken at a later offset, and feed tables from compacted streams "
                "(Retention(compact=True) keeps the latest record of every key)")
        if need > p.end:
            raise OffsetOutOfRangeError(
                f"table {table!r} reflects {sp} up to offset {need}, past the stream's end "
                f"{p.end}: the stream was recreated or is another one; rebuild the table")
        start_at[sp] = need
    return start_at

def open_reader(streams: Streams, table: Table, stream: str
                ) -> tuple[Consumer, dict[StreamPartition, int], TableInfo]:
    """A consumer of ``stream`` placed where ``table``'s stored offsets say its feed goes on
    (refused when the table is fed from another stream, or the stream no longer holds those
    offsets); marks ``stream`` as the table's feed the first time. Returns the consumer, the
    offsets it starts at and the table's info as read."""
    info = table.info()
    if info.feed not in (None, stream):
        raise InvalidRequestError(
            f"table {table.name!r} is fed from stream {info.feed!r}, not {stream!r}; drop it, "
            f"or rebuild it from {stream!r} (millstream tables rebuild {table.name} "
            f"--stream {stream})")
    start = check_replayable(streams.admin(), table.name, stream, info.offsets)
    if info.feed is None:
        with table.transaction() as tx:
            tx.set_feed(stream)
    consumer = streams.open_consumer()
    try:
        consumer.subscribe([stream])
        for sp, offset in start.items():
            if consumer.position(sp) != offset:  # a Kafka seek asks the broker (~0.5 s)
                consumer.seek(sp, offset)
    except BaseException:
        consumer.close()
        raise
    return consumer, start, info



class Materializer:
    """Feeds ``table`` (created if missing, with ``indexes``) from ``stream``.

    ``key(record)`` gives a document's key (default: the record key as UTF-8; None skips the
    record); ``model`` validates and normalises every document. One materializer per table
    at a time: a second one, or a restore under it, makes its next commit raise
    ``FencedError``. Use it with ``with`` or call ``close()``.
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
        self._batch_size = batch_size
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._expected: dict[StreamPartition, int] = {}
        self._start: dict[StreamPartition, int] = {}
        self._stats = MaterializerStatistics()

    # -- opening ------------------------------------------------------------------------------

    def _open(self) -> Consumer:
        if self._consumer is not None:
            return self._consumer
        consumer, start, info = open_reader(self._streams, self.table, self.stream)
        self._consumer = consumer
        self._start = start
        self._expected = {sp: info.offsets[sp] for sp in start if sp in info.offsets}
        return consumer

    # -- applying -----------------------------------------------------------------------------

    def step(self, timeout: float = 0.5) -> int:
        """Poll one batch — up to ``batch_size`` records, waiting up to ``timeout`` s for the
        first and not at all for more — and apply it in one transaction with its offsets;
        return how many records it held. Large batches pay: with random keys a transaction
        rewrites most of the pages it touches, whatever the number of rows."""
        consumer = self._open()
        records = consumer.poll(min(self._batch_size, _POLL), timeout)
        while records and len(records) < self._batch_size:  # fill the batch from what is there
            more = consumer.poll(min(self._batch_size - len(records), _POLL), 0)
            if not more:
                break
            records.extend(more)
        if not records:
            return 0
        changes = changes_of(self.table.name, records, key=self._key, model=self._model)
        puts, deletes = changes.puts, changes.deletes
        offsets = {sp: consumer.position(sp) for sp in self._start}
        with self.table.transaction() as tx:
            stored = tx.offsets()
            if {sp: o for sp, o in stored.items() if sp in self._start} != self._expected:
                raise FencedError(
                    f"table {self.table.name!r} was written by someone else (another "
                    "materializer, a restore or a rebuild): its stored offsets are not the "
                    "ones this materializer left; stop one of them and start again")
            tx.put_json(puts)
            tx.delete_many(deletes)
            tx.set_offsets(offsets)
            fault_point("tables.materialize.before_commit")
        fault_point("tables.materialize.after_commit")
        self._expected = offsets
        s = self._stats
        self._stats = MaterializerStatistics(
            s.batches + 1, s.records + len(records), s.upserts + len(puts),
            s.deletes + len(deletes), s.skipped + changes.skipped, dict(offsets))
        return len(records)

    def catch_up(self, progress: Progress | None = None, *, timeout: float = 0.2
                 ) -> MaterializerStatistics:
        """Apply every record up to the stream's end as it is at the call, then return
        (early if ``stop()`` is called meanwhile)."""
        self._stop.clear()
        consumer = self._open()
        info = self._streams.admin().describe_stream(self.stream)
        target = {StreamPartition(self.stream, p.partition): p.end for p in info.partitions}
        base = {sp: consumer.position(sp) for sp in target}
        total = sum(max(target[sp] - base[sp], 0) for sp in target)
        if progress is not None:
            progress(0, total)
        while not self._stop.is_set():
            positions = {sp: consumer.position(sp) for sp in target}
            if all(positions[sp] >= end for sp, end in target.items()):
                break
            if self.step(timeout) == 0 and not any(consumer.lag().values()):
                break
            if progress is not None:
                done = sum(min(consumer.position(sp), target[sp]) - base[sp] for sp in target)
                progress(done, total)
        if progress is not None:
            progress(total, total)
        return self.statistics()

    def run(self, until: Callable[[], bool] | None = None, *, timeout: float = 0.5) -> None:
        """Apply records as they come until ``stop()`` is called or ``until()`` is true."""
        self._stop.clear()
        while not self._stop.is_set() and not (until is not None and until()):
            self.step(timeout)

    def stop(self) -> None:
        """Make ``run`` return after its current batch (safe from another thread)."""
        self._stop.set()

    def statistics(self) -> MaterializerStatistics:
        return self._stats

    def close(self) -> None:
        """Close the consumer (the streams and tables handles stay the caller's); idempotent."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> Materializer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def rebuild(streams: Streams, tables: Tables, table: str, *, stream: str | None = None,
            into: str | None = None, into_tables: Tables | None = None,
            key: KeyFunction | None = None, model: type[BaseModel] | None = None,
            progress: Progress | None = None) -> MaterializerStatistics:
    """Recreate ``table`` from scratch by replaying its stream (``stream``, else its feed).

    With ``into`` (a table name, in ``into_tables`` or the same backend) the live table is
    left alone — it keeps serving, and its materializer keeps running — and an up-to-date
    copy is built there, caught up to the stream's end. Refused, before anything changes,
    when the stream's retention has removed records the table needs.
    """
    try:
        info: TableInfo | None = tables.table(table).info()
    except NotFoundError:
        if stream is None:
            raise
        info = None
    feed = stream or (info.feed if info is not None else None)
    if feed is None:
        raise InvalidRequestError(
            f"table {table!r} has no stream recorded as its feed; name it (--stream STREAM)")
    check_replayable(streams.admin(), into or table, feed, {})
    target_tables = into_tables or tables
    target_name = into or table
    indexes = info.indexes if info is not None else ()
    target = target_tables.ensure_table(target_name, indexes=indexes)
    with target.transaction() as tx:
        tx.clear()
        tx.set_feed(feed)
    with Materializer(streams, target_tables, target_name, feed, key=key, model=model) as m:
        return m.catch_up(progress)
