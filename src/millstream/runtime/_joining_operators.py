"""The handlers millstream writes for joins: one operator object per join service.

An operator is called like any stateful handler — ``(value, ctx, keys)``, ``keys`` being the
co-partitioning check its service's lifespan opened (``runtime._copartition``) — and keeps
what it must remember in ``ctx.state``, the shard of the record's partition number. Which
input a record came from says which side of the join it is on. The join logic itself is in
``_joining_interval`` and ``_joining_asof`` (and, for the stream–table join, here: a row per
key); operators only read records, call the user's ``combine`` and say what is late.

The user's code runs before the state is changed in place, so that a failed attempt (its
overlay dropped by the runtime) leaves the shard as it was.

A stream–table join keeps each shard's rows decoded in memory too (``_Rows``), so that a
record's row is not decoded again for every record of its key; the shard keeps the rows'
bytes, which is what is checkpointed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from millstream.codecs import Codec, header
from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.runtime._copartition import KeyCheck
from millstream.runtime._joining import EventTime, Packer, Shard, key_bytes, key_text
from millstream.runtime._joining_asof import AsofHistory
from millstream.runtime._joining_interval import LEFT, RIGHT, IntervalBuffers
from millstream.runtime._joining_table import TableRows

if TYPE_CHECKING:
    from millstream.service._context import Context

__all__ = ["AsofJoin", "IntervalJoin", "LateRecord", "TableJoin", "UnmatchedRecord"]

#: the header a replayed record names its original stream in (``runtime._handling``)
_REPLAY_STREAM = "millstream-replay-stream"
#: rows kept decoded per shard before the memory copy starts again (the shard keeps all)
_ROWS_IN_MEMORY = 100_000
_MISSING: Final = object()

Combine = Callable[[Any, Any], Any]


class LateRecord(Exception):
    """A join's input record came after the watermark passed what it could still join."""

    #: the exceptions stream's stage for it (the runtime reads ``stage`` off what a handler
    #: reports)
    stage = "late"


class UnmatchedRecord(Exception):
    """An inner join's record found nothing to join with (reported only when asked)."""

    stage = "join"


for _cls in (LateRecord, UnmatchedRecord):  # exception records name the public module
    _cls.__module__ = "millstream.service"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class _Operator:
    """What every join operator does: tell a record's side and key, check co-partitioning."""

    def __init__(self, service: str, sides: dict[str, int], codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str) -> None:
        self.service = service
        self._sides = sides
        self._packers = {side: Packer(codec) for side, codec in codecs.items()}
        self._combine = combine
        self._output = output
        # a handler's name, for logs and the checks made when it is declared
        self.__name__ = service

    def _side(self, record: Record) -> int:
        """The side of a record of the service's retry stream (a replay): its original
        stream's."""
        original = header(record.headers, _REPLAY_STREAM)
        side = self._sides.get(original or "")
        if side is None:
            raise InvalidRequestError(
                f"record {record.position} of join {self.service!r} comes from "
                f"{record.stream!r}, which is not one of its inputs ({', '.join(self._sides)})")
        return side

    def _key(self, record: Record, keys: KeyCheck | None) -> bytes:
        key = record.key
        if key is None:
            raise KeyCheck.no_key(self.service, record)
        if keys is not None and record.stream in self._sides:  # not a replay: it was read
            keys(record)  # from the partition its key says
        return key


class _Rows:
    """One shard's table rows, decoded, as far as they were needed (a cache of the shard),
    and whether the table side was read ahead for it in this run."""

    __slots__ = ("ready", "rows", "shard")

    def __init__(self, shard: Shard) -> None:
        self.shard = weakref.ref(shard)
        self.rows: dict[bytes, Any] = {}
        self.ready = False


class TableJoin(_Operator):
    """Stream–table: each record of the stream side is combined with its key's current
    table row (``None`` when it has none; dropped instead when ``inner``)."""

    def __init__(self, service: str, stream: str, table: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, inner: bool, report: bool) -> None:
        super().__init__(service, {stream: LEFT, table: RIGHT}, codecs, combine, output)
        self._table = TableRows(table, codecs[RIGHT])
        self._inner = inner
        self._report = report
        self._shards: dict[int, _Rows] = {}
        self._last: _Rows | None = None

    def _rows(self, shard: Shard) -> _Rows:
        last = self._last
        if last is not None and last.shard() is shard:
            return last
        found = self._shards.get(id(shard))
        if found is None or found.shard() is not shard:
            found = self._shards[id(shard)] = _Rows(shard)
            weakref.finalize(shard, self._shards.pop, id(shard), None)
        self._last = found
        return found

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> Any:
        record = ctx.record
        shard: Shard = ctx.state
        side = self._sides.get(record.stream)
        replay = side is None
        if side is None:
            side = self._side(record)
        key = self._key(record, keys)
        cached = self._rows(shard)
        rows = cached.rows
        if side == RIGHT:  # the table's changelog: the key's row is now this (or none)
            if replay:
                self._table.apply(shard, key, record.value, None)
            elif self._table.fresh(shard, record.offset):
                self._table.apply(shard, key, record.value, record.offset)
            else:
                return None  # read ahead already
            if len(rows) >= _ROWS_IN_MEMORY:
                rows.clear()
            rows[key] = value
            return None
        if not cached.ready and not replay:  # the first record of this shard in this run
            rows.clear()
            self._table.read_ahead(ctx.streams, shard, record.partition)
        row = rows.get(key, _MISSING)
        if row is _MISSING:
            _, row = self._table.row(shard, key)
            if len(rows) >= _ROWS_IN_MEMORY:
                rows.clear()
            rows[key] = row
        if row is None and self._inner:
            if self._report:
                ctx.report(UnmatchedRecord(
                    f"no row of key {key!r} in the table side of join {self.service!r} "
                    "when this record came (an inner join drops it)"))
            cached.ready = True
            return None
        joined = self._combine(value, row)
        cached.ready = True  # (after the user's code: a failed attempt reads ahead again)
        return joined


class IntervalJoin(_Operator):
    """Stream–stream: records of the two sides with one key whose times are at most
    ``within`` apart are combined, ``combine(left, right)``, once per pair."""

    def __init__(self, service: str, left: str, right: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, times: dict[int, EventTime],
                 buffers: IntervalBuffers) -> None:
        super().__init__(service, {left: LEFT, right: RIGHT}, codecs, combine, output)
        self._times = times
        self._buffers = buffers
        self._clock = times[LEFT]  # both sides share the shard's watermark

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> Any:
        record = ctx.record
        shard: Shard = ctx.state
        side = self._sides.get(record.stream)
        if side is None:
            side = self._side(record)
        key = self._key(record, keys)
        buffers, clock = self._buffers, self._clock
        time_ms = self._times[side].of(value, record)
        watermark = clock.watermark(shard)
        if buffers.late(time_ms, watermark):
            ctx.report(LateRecord(
                f"record at {_when(time_ms)} came after the watermark ({_when(watermark)}) "
                f"passed its time + within + grace: join {self.service!r} can no longer match "
                "it (a larger grace= keeps records waiting longer)"))
            return None
        text = key_text(key)
        combine, out = self._combine, []
        partners = buffers.partners(shard, side, text, time_ms)
        if partners:
            unpack = self._packers[1 - side].unpack
            for packed in partners:
                other = unpack(packed)
                joined = combine(value, other) if side == LEFT else combine(other, value)
                if joined is not None:
                    out.append(joined)
        buffers.keep(shard, side, text, time_ms, self._packers[side].pack(record.value))
        buffers.expire(shard, clock.see(shard, time_ms))
        return out or None

    def advance(self, shard: Shard, now_ms: int, idle_ms: int) -> None:
        """Time passed with no record: move the watermark (idle rule) and expire."""
        self._buffers.expire(shard, self._clock.idle(shard, now_ms, idle_ms))


class AsofJoin(_Operator):
    """As-of: each stream-side record is combined with the latest table-side version of its
    key at or before its time, once the watermark says no earlier version can come."""

    def __init__(self, service: str, stream: str, table: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, times: dict[int, EventTime],
                 history: AsofHistory, inner: bool, report: bool) -> None:
        super().__init__(service, {stream: LEFT, table: RIGHT}, codecs, combine, output)
        self._times = times
        self._history = history
        self._clock = times[LEFT]
        self._inner = inner
        self._report = report

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> None:
        record = ctx.record
        shard: Shard = ctx.state
        side = self._sides.get(record.stream)
        if side is None:
            side = self._side(record)
        key = self._key(record, keys)
        history, clock = self._history, self._clock
        time_ms = self._times[side].of(value, record)
        watermark = clock.watermark(shard)
        if history.late(time_ms, watermark):
            what = "version" if side == RIGHT else "record"
            ctx.report(LateRecord(
                f"{what} at {_when(time_ms)} came after the watermark ({_when(watermark)}) "
                f"passed its time + grace: join {self.service!r} has answered for that time "
                "already (a larger grace= waits longer)"))
            return
        packed = self._packers[side].pack(record.value)
        watermark = clock.see(shard, time_ms)
        if side == RIGHT:  # copied, not changed in place: applied before the user's code
            history.add_version(shard, key_text(key), time_ms, packed, watermark)
            self.release(shard, watermark, ctx)
        else:  # never released at once (it is not late): waits after the user's code ran
            self.release(shard, watermark, ctx)
            history.wait(shard, key_text(key), time_ms, packed)

    def release(self, shard: Shard, watermark: int, ctx: Context) -> None:
        """Join and emit the records the watermark released."""
        history = self._history
        taken = history.take(shard, watermark)
        if not taken:
            return
        try:
            unpack, unpack_row = self._packers[LEFT].unpack, self._packers[RIGHT].unpack
            for time_ms, _, key, packed in taken:
                found, row = history.lookup(shard, key, time_ms)
                value = unpack(packed)
                if not found and self._inner:
                    if self._report:
                        ctx.report(UnmatchedRecord(
                            f"no version of key {key!r} at or before {_when(time_ms)} in "
                            f"join {self.service!r} (an inner join drops the record)"))
                    continue
                joined = self._combine(value, unpack_row(row) if found else None)
                if joined is not None:
                    ctx.emit(self._output, joined, key=key_bytes(key))
        except BaseException:
            history.put_back(shard, taken)
            raise
