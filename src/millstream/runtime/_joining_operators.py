"""The handlers millstream writes for joins: one operator object per join service.

An operator is called like any stateful handler — ``(value, ctx, keys)``, ``keys`` being the
co-partitioning check its service's lifespan opened (``runtime._copartition``) — and keeps
what it must remember in ``ctx.state``, the shard of the record's partition number. Which
input a record came from says which side of the join it is on. The join logic itself is in
``_joining_interval``, ``_joining_asof`` and ``_joining_table``; operators only read records,
call the user's ``combine`` and say what is late.

The user's code runs before the state is changed in place, so that a failed attempt (its
overlay dropped by the runtime) leaves the shard as it was.

A stream–table join keeps each shard's rows decoded in memory, not in the state: they are
loaded from the table side when the shard is first used in a run (``_joining_table``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from millstream.codecs import Codec, header
from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.runtime._copartition import KeyCheck
from millstream.runtime._joining import EventTime, Packer, Shard, key_bytes, key_text
from millstream.runtime._joining_asof import AsofHistory
from millstream.runtime._joining_interval import LEFT, RIGHT, IntervalBuffers
from millstream.runtime._joining_table import Rows, TableRows
from millstream.service._join_errors import LateJoinRecord, UnmatchedJoinRecord

if TYPE_CHECKING:
    from millstream.service._context import Context
    from millstream.service._operator import ShardOutput

__all__ = ["AsofJoin", "IntervalJoin", "LateJoinRecord", "TableJoin", "UnmatchedJoinRecord"]

#: the header a replayed record names its original stream in (``runtime._handling``)
_REPLAY_STREAM = "millstream-replay-stream"
_REPLAY_PARTITION = "millstream-replay-partition"

Combine = Callable[[Any, Any], Any]


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

    def flush(self, number: int, shard: Shard, out: ShardOutput) -> None:
        """Nothing to emit before a checkpoint: a join's outputs go out with its records."""

    def advance(self, number: int, shard: Shard, now: float, out: ShardOutput) -> None:
        """Nothing moves with the clock (see the time joins')."""

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

    def _arrive(self, value: Any, ctx: Context, keys: KeyCheck | None, times: dict[int, EventTime],
                clock: EventTime, idle: _Idle) -> tuple[Record, Shard, int, bytes, int, int]:
        """What a timed join reads first of a record: (the record, its shard, its side, its
        key, its event time, the shard's watermark before it)."""
        record = ctx.record
        shard: Shard = ctx.state
        side = self._sides.get(record.stream)
        if side is None:
            side = self._side(record)
        key = self._key(record, keys)
        idle.saw(record.partition, side)
        return record, shard, side, key, times[side].of(value, record), clock.watermark(shard)

    def _key(self, record: Record, keys: KeyCheck | None) -> bytes:
        key = record.key
        if key is None:
            raise KeyCheck.no_key(self.service, record)
        if keys is not None and record.stream in self._sides:  # not a replay: it was read
            keys(record)  # from the partition its key says
        return key


class TableJoin(_Operator):
    """Stream–table: each record of the stream side is combined with its key's current
    table row (``None`` when it has none; dropped instead when ``inner``). The rows are
    kept in memory per shard, loaded from the table side when the shard is first used in a
    run (``_joining_table``)."""

    def __init__(self, service: str, stream: str, table: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, inner: bool, report: bool) -> None:
        super().__init__(service, {stream: LEFT, table: RIGHT}, codecs, combine, output)
        self._table = TableRows(table, codecs[RIGHT])
        self._inner = inner
        self._report = report
        self._shards: dict[int, Rows] = {}
        self._last: Rows | None = None

    def _rows(self, shard: Shard) -> Rows:
        """The rows of ``shard`` (the object: a shard loaded again gets them loaded again)."""
        last = self._last
        if last is not None and last.shard() is shard:
            return last
        found = self._shards.get(id(shard))
        if found is None or found.shard() is not shard:
            found = self._shards[id(shard)] = Rows(shard)
            weakref.finalize(shard, self._shards.pop, id(shard), None)
        self._last = found
        return found

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> Any:
        record = ctx.record
        side = self._sides.get(record.stream)
        replay = side is None
        if side is None:
            side = self._side(record)
        key = self._key(record, keys)
        rows = self._rows(ctx.state)
        if rows.next is None:  # the shard's first record in this run: load its rows
            number = (int(header(record.headers, _REPLAY_PARTITION) or 0) if replay
                      else record.partition)  # a replay names the partition it came from
            self._table.load(ctx.streams, number, rows)
        if side == RIGHT:  # the table's changelog: the key's row is now this (or none)
            if replay:
                rows.apply(key, value, None)
            elif rows.next is None or record.offset >= rows.next:
                rows.apply(key, value, record.offset)
            return None  # (else: loaded already)
        row = rows.rows.get(key)
        if row is None and self._inner:
            if self._report:
                ctx.report(UnmatchedJoinRecord(
                    f"no row of key {key!r} in the table side of join {self.service!r} "
                    "when this record came (an inner join drops it)"))
            return None
        return self._combine(value, row)


class _Idle:
    """When each input of each shard last had a record, by the records counted in memory: an
    idle input's time moves with the wall clock (``EventTime.idle``), never backwards."""

    __slots__ = ("_count", "_idle", "_last", "_since")

    def __init__(self, idle_ms: int | None) -> None:
        self._idle = idle_ms
        self._count = 0
        #: (shard number, side) -> the count at its last record
        self._last: dict[tuple[int, int], int] = {}
        #: -> (that count, when it was first seen)
        self._since: dict[tuple[int, int], tuple[int, float]] = {}

    def saw(self, number: int, side: int) -> None:
        self._count += 1
        self._last[number, side] = self._count

    def idle_sides(self, number: int, now: float) -> tuple[list[int], int]:
        """(the inputs of shard ``number`` that have had no record for the idle timeout of
        wall-clock time ``now`` (seconds), the timeout in ms); none without a timeout."""
        if self._idle is None:
            return [], 0
        sides = []
        for side in (LEFT, RIGHT):
            last = self._last.get((number, side), 0)
            since = self._since.get((number, side))
            if since is None or since[0] != last:
                self._since[number, side] = (last, now)
            elif (now - since[1]) * 1000 >= self._idle:
                sides.append(side)
        return sides, self._idle


class IntervalJoin(_Operator):
    """Stream–stream: records of the two sides with one key whose times are at most
    ``within`` apart are combined, ``combine(left, right)``, once per pair; with ``how``
    ``"left"`` (or ``"outer"``) a left (or any) record that met no partner is combined with
    None once no partner can come any more."""

    def __init__(self, service: str, left: str, right: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, times: dict[int, EventTime],
                 buffers: IntervalBuffers, idle_ms: int | None, how: str = "inner") -> None:
        super().__init__(service, {left: LEFT, right: RIGHT}, codecs, combine, output)
        self._times = times
        self._buffers = buffers
        self._clock = times[LEFT]  # both sides share the shard's watermark
        self._idle = _Idle(idle_ms)
        #: the sides whose unmatched records are emitted alone
        self._alone = {"inner": (), "left": (LEFT,), "outer": (LEFT, RIGHT)}[how]

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> Any:
        buffers, clock = self._buffers, self._clock
        record, shard, side, key, time_ms, watermark = self._arrive(
            value, ctx, keys, self._times, clock, self._idle)
        if buffers.late(time_ms, watermark):
            ctx.report(LateJoinRecord(
                f"record at {_when(time_ms)} came after the watermark ({_when(watermark)}) "
                f"passed its time + within + grace: join {self.service!r} can no longer match "
                "it (a larger grace= keeps records waiting longer)"))
            return None
        text = key_text(key)
        combine, out = self._combine, []
        partners = buffers.partners(shard, side, text, time_ms)
        if partners:
            unpack = self._packers[1 - side].unpack
            for entry in partners:
                other = unpack(entry[1])
                joined = combine(value, other) if side == LEFT else combine(other, value)
                if joined is not None:
                    out.append(joined)
        output = self._output

        def emit(joined: Any, key: bytes) -> None:
            ctx.emit(output, joined, key=key)

        self._expire(shard, clock.after(shard, side, time_ms), emit)
        # no user code from here on: the changes in place stay only if the attempt does
        buffers.keep(shard, side, text, time_ms, self._packers[side].pack(record.value),
                     partners)
        clock.see(shard, side, time_ms)
        return out or None

    def _expire(self, shard: Shard, watermark: int,
                emit: Callable[[Any, bytes], None]) -> None:
        """Drop what no partner can reach at ``watermark``; emit the unmatched alone."""
        popped, unmatched = self._buffers.expire(shard, watermark)
        alone = self._alone
        if not unmatched or not alone:
            return
        try:
            for side, key, packed in unmatched:
                if side not in alone:
                    continue
                value = self._packers[side].unpack(packed)
                joined = (self._combine(value, None) if side == LEFT
                          else self._combine(None, value))
                if joined is not None:
                    emit(joined, key_bytes(key))
        except BaseException:
            self._buffers.put_back(shard, popped)
            raise

    def advance(self, number: int, shard: Shard, now: float, out: ShardOutput) -> None:
        """An idle input's time moves with the clock: drop what no partner can reach
        (emitting the unmatched alone, for a left or outer join)."""
        sides, idle = self._idle.idle_sides(number, now)
        if not sides:
            return
        output = self._output

        def emit(joined: Any, key: bytes) -> None:
            out.emit(output, joined, key=key)

        self._expire(shard, self._clock.idle(shard, sides, int(now * 1000), idle), emit)


class AsofJoin(_Operator):
    """As-of: each stream-side record is combined with the latest table-side version of its
    key at or before its time, once the watermark says no earlier version can come."""

    def __init__(self, service: str, stream: str, table: str, codecs: dict[int, Codec[Any]],
                 combine: Combine, output: str, *, times: dict[int, EventTime],
                 history: AsofHistory, inner: bool, report: bool,
                 idle_ms: int | None) -> None:
        super().__init__(service, {stream: LEFT, table: RIGHT}, codecs, combine, output)
        self._times = times
        self._history = history
        self._clock = times[LEFT]
        self._inner = inner
        self._report = report
        self._idle = _Idle(idle_ms)

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> None:
        history, clock = self._history, self._clock
        record, shard, side, key, time_ms, watermark = self._arrive(
            value, ctx, keys, self._times, clock, self._idle)
        if history.late(time_ms, watermark):
            what = "version" if side == RIGHT else "record"
            ctx.report(LateJoinRecord(
                f"{what} at {_when(time_ms)} came after the watermark ({_when(watermark)}) "
                f"passed its time + grace: join {self.service!r} has answered for that time "
                "already (a larger grace= waits longer)"))
            return
        packed = self._packers[side].pack(record.value)
        watermark = clock.see(shard, side, time_ms)
        output = self._output

        def emit(joined: Any, key: bytes) -> None:
            ctx.emit(output, joined, key=key)

        if side == RIGHT:  # copied, not changed in place: applied before the user's code
            history.add_version(shard, key_text(key), time_ms, packed, watermark)
            self.release(shard, watermark, emit, ctx.report)
        else:  # never released at once (it is not late): waits after the user's code ran
            self.release(shard, watermark, emit, ctx.report)
            history.wait(shard, key_text(key), time_ms, packed)

    def advance(self, number: int, shard: Shard, now: float, out: ShardOutput) -> None:
        """An idle input's time moves with the clock: answer the records it releases."""
        sides, idle = self._idle.idle_sides(number, now)
        if not sides:
            return
        output = self._output

        def emit(joined: Any, key: bytes) -> None:
            out.emit(output, joined, key=key)

        self.release(shard, self._clock.idle(shard, sides, int(now * 1000), idle), emit,
                     out.report)

    def release(self, shard: Shard, watermark: int, emit: Callable[[Any, bytes], None],
                report: Callable[[BaseException], None] | None) -> None:
        """Join and emit the records the watermark released (an unmatched one of an inner
        join is reported when asked: against the record being handled, or the shard when the
        idle clock released it)."""
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
                    if self._report and report is not None:
                        report(UnmatchedJoinRecord(
                            f"no version of key {key!r} at or before {_when(time_ms)} in "
                            f"join {self.service!r} (an inner join drops the record)"))
                    continue
                joined = self._combine(value, unpack_row(row) if found else None)
                if joined is not None:
                    emit(joined, key_bytes(key))
        except BaseException:
            history.put_back(shard, taken)
            raise
