"""The window operator: the handler of a windowed service, with its flush and advance hooks.

Per record it takes the event time, finds the record's windows, adds the record to those
still open, moves the shard's watermark and closes the windows it passed. Its state is one
shard per partition number — plain JSON data, checkpointed with the input offsets::

    {"wm": watermark ms | None, "next": the earliest end + grace of an open window | None,
     "n": records seen, "open": {window id: [key, start, end, accumulator, records]},
     "expire": heap of [end + grace + retention, window id] of closed windows,
     "dirty": {window id: window (a closed one ends with True) | None (removed)}}

``dirty`` holds the windows changed since the last flush; ``flush`` (before the shard's
checkpoint or transaction) turns them into window-table rows — one per window, however many
records changed it — and empties it, so a checkpoint always holds an empty ``dirty``.
``advance`` (about once a second) moves an idle shard's watermark with the wall clock.

Rules (docs/internals/windows-design.md): watermark = largest event time − lateness, never
backwards; a window ``[start, end)`` closes when the watermark reaches ``end + grace``; a
record all of whose windows are closed is late and goes to the exceptions stream (stage
``late``) naming them; a closed window's row is removed (a tombstone) when the watermark
reaches ``end + grace + retention``. Count windows (``Counted``) close at their n-th record.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from millstream.errors import InvalidRequestError
from millstream.faults import fault_point
from millstream.service._aggregates import Aggregate
from millstream.service._window_rows import LateRecord, WindowRow
from millstream.service._windows import Counted, Hopping, Session, Tumbling

if TYPE_CHECKING:
    from millstream.runtime._state import Shard
    from millstream.service._context import Context
    from millstream.service._operator import ShardOutput
    from millstream.service._windowed import TimeOf, WindowedService

__all__ = ["WindowOperator", "event_time_of"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode




def event_time_of(time: TimeOf) -> Callable[[Any, int], int]:
    """``of(value, timestamp)``: a record's event time in ms, from its timestamp (``time`` is
    None), a payload field or a function of the payload."""
    if time is None:
        return lambda value, timestamp: timestamp
    if callable(time):
        get: Callable[[Any], Any] = time
        what = getattr(time, "__name__", repr(time))
    else:
        name = time

        def get(value: Any) -> Any:
            return value[name] if isinstance(value, dict) else getattr(value, name)
        what = f"field {name!r}"

    def of(value: Any, timestamp: int) -> int:
        try:
            found = get(value)
        except (KeyError, AttributeError):
            raise InvalidRequestError(
                f"the payload has no event time: its {what} is missing") from None
        if isinstance(found, datetime):
            if found.tzinfo is None:
                found = found.replace(tzinfo=UTC)
            return round(found.timestamp() * 1000)
        if isinstance(found, int | float) and not isinstance(found, bool) \
                and found == found:
            return round(found * 1000)
        raise InvalidRequestError(
            f"event time {what} is {found!r}; it must be a datetime or a number of seconds "
            "since the epoch")

    return of


def _new_shard(data: dict[str, Any]) -> None:
    data["wm"] = None
    data["next"] = None
    data["n"] = 0
    data["open"] = {}
    data["expire"] = []
    data["dirty"] = {}


class WindowOperator:
    """The handler of a windowed service (an ``Operator``); see the module docstring."""

    def __init__(self, declared: WindowedService, time: TimeOf) -> None:
        self.declared = declared
        window = declared.window
        if not isinstance(window, Tumbling | Hopping | Counted):
            raise InvalidRequestError(
                f"windowed service {declared.name!r}: {type(window).__name__} windows are "
                "not available yet; use Tumbling, Hopping or Counted")
        self._window = window
        self._spans = None if isinstance(window, Counted | Session) else window.spans
        self._time = event_time_of(time)
        agg: Aggregate = declared.aggregate
        self._agg = agg
        self._table = declared.table.stream
        self._output = declared.output
        self._updates = declared.emit == "updates"
        self._lateness = declared.lateness_ms
        self._grace = declared.grace_ms
        self._retention = declared.retention_ms
        self._idle = declared.idle_timeout_ms
        #: per shard number: (the shard, its record count, when that count was last seen to
        #: change, wall-clock seconds) — in memory: idleness is wall-clock, not state
        self._activity: dict[int, tuple[Shard, int, float]] = {}

    # -- records ----------------------------------------------------------------------------

    def __call__(self, value: Any, ctx: Context) -> None:
        record = ctx.record
        shard = ctx.state
        data = shard.data
        if "open" not in data:
            _new_shard(data)
        shard.changed = True
        data["n"] += 1
        raw = record.key
        key = raw.decode("utf-8", "replace") if raw is not None else ""
        agg = self._agg
        pick = agg.pick
        v = value if pick is None else pick(value)
        spans = self._spans
        if spans is None:  # Counted: no time
            self._count(data, key, raw, v, ctx)
            return
        t = self._time(value, record.timestamp)
        wm = data["wm"]
        grace = self._grace
        open_, dirty = data["open"], data["dirty"]
        missed: list[tuple[int, int]] | None = None
        mine = spans(t)
        for start, end in mine:
            if wm is not None and end + grace <= wm:
                if missed is None:
                    missed = []
                missed.append((start, end))
                continue
            wid = f"{key}/{start:015d}"
            w = open_.get(wid)
            if w is None:
                w = open_[wid] = [key, start, end, agg.initial(), 0]
                nxt = data["next"]
                if nxt is None or end + grace < nxt:
                    data["next"] = end + grace
            w[3] = agg.add(w[3], v, t)
            w[4] += 1
            dirty[wid] = w
            if self._updates and self._output is not None:
                ctx.emit(self._output, _row(w, agg, False), key=raw)
        if missed is not None and len(missed) == len(mine):
            assert wm is not None
            ctx.report(LateRecord(key, t, missed, wm, grace))
            return
        mark = t - self._lateness
        if wm is None or mark > wm:
            data["wm"] = mark
            nxt = data["next"]
            if (nxt is not None and mark >= nxt) or data["expire"]:
                self._close(data, mark, ctx.emit)

    def _count(self, data: dict[str, Any], key: str, raw: bytes | None, v: Any,
               ctx: Context) -> None:
        """A record of a count window: the key's open window takes it; the n-th closes it."""
        size = self._window.n  # type: ignore[union-attr]
        counts = data.setdefault("counts", {})
        seen = counts.get(key, 0)
        start = seen - seen % size
        counts[key] = seen + 1
        wid = f"{key}/{start:015d}"
        open_ = data["open"]
        w = open_.get(wid)
        if w is None:
            w = open_[wid] = [key, start, start + size, self._agg.initial(), 0]
        w[3] = self._agg.add(w[3], v, seen)
        w[4] += 1
        if w[4] == size:
            del open_[wid]
            w.append(True)
            if self._output is not None:
                ctx.emit(self._output, _row(w, self._agg, True), key=raw)
        elif self._updates and self._output is not None:
            ctx.emit(self._output, _row(w, self._agg, False), key=raw)
        data["dirty"][wid] = w

    def _close(self, data: dict[str, Any], wm: int,
               emit: Callable[..., None]) -> None:
        """Close the open windows the watermark ``wm`` passed (their final results go out),
        and remove the closed windows whose retention it passed."""
        grace, agg, output = self._grace, self._agg, self._output
        open_, dirty = data["open"], data["dirty"]
        limit = wm - grace
        closing: list[tuple[int, str, str]] = []
        nxt: int | None = None
        for wid, w in open_.items():
            end = w[2]
            if end <= limit:
                closing.append((end, w[0], wid))
            elif nxt is None or end + grace < nxt:
                nxt = end + grace
        data["next"] = nxt
        expire = data["expire"]
        retention = self._retention
        for end, _, wid in sorted(closing):
            w = open_.pop(wid)
            w.append(True)
            dirty[wid] = w
            if retention is not None:
                heapq.heappush(expire, [end + grace + retention, wid])
            if output is not None:
                emit(output, _row(w, agg, True), key=w[0].encode())
        while expire and expire[0][0] <= wm:
            _, wid = heapq.heappop(expire)
            dirty[wid] = None

    # -- hooks ------------------------------------------------------------------------------

    def flush(self, number: int, shard: Shard, out: ShardOutput) -> None:
        """Emit a window-table row for each window changed since the last flush (a
        tombstone for each removed one)."""
        data = shard.data
        dirty = data.get("dirty")
        if not dirty:
            return
        fault_point("windows.flush.before_emit")
        table, emit, result = self._table, out.emit_encoded, self._agg.result
        for wid, w in dirty.items():
            if w is None:
                emit(table, wid.encode(), None)
                continue
            emit(table, wid.encode(), _dumps(
                {"key": w[0], "start": w[1], "end": w[2], "value": result(w[3]),
                 "records": w[4], "closed": len(w) > 5}).encode())
        dirty.clear()
        fault_point("windows.flush.after_emit")

    def advance(self, number: int, shard: Shard, now: float, out: ShardOutput) -> None:
        """An idle shard — no record for ``idle_timeout`` of wall-clock time — moves its
        watermark to ``now − lateness − idle_timeout`` (never backwards)."""
        data = shard.data
        if "open" not in data:
            _new_shard(data)
        count = data["n"]
        seen = self._activity.get(number)
        if seen is None or seen[0] is not shard or seen[1] != count:
            self._activity[number] = (shard, count, now)
            return
        idle = self._idle
        if idle is None or self._spans is None or (now - seen[2]) * 1000 < idle:
            return
        mark = int(now * 1000) - self._lateness - idle
        wm = data["wm"]
        if wm is not None and mark <= wm:
            return
        data["wm"] = mark
        shard.changed = True
        self._close(data, mark, out.emit)


def _row(w: list[Any], agg: Aggregate, closed: bool) -> WindowRow:
    return WindowRow.model_construct(key=w[0], start=w[1], end=w[2], value=agg.result(w[3]),
                                     records=w[4], closed=closed)
