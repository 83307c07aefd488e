"""The window operator: the handler of a windowed service, with its flush and advance hooks.

Per record it takes the event time, finds the record's windows, adds the record to those
still open, moves the shard's watermark and closes the windows it passed. Its state is one
shard per partition number — plain JSON data, checkpointed with the input offsets::

    {"wm": watermark ms | None, "next": the earliest end + grace of an open window | None,
     "due": heap of [end + grace, window id] of the open windows (stale entries skipped),
     "n": records seen, "open": {window id: [key, start, end, accumulator, records]},
     "expire": heap of [end + grace + retention, window id] of closed windows,
     "keys": {key: [window id of each open window]} (sessions and sliding windows),
     "records": {key: [[t, value], ...] in time order} (sliding windows: what a window
                still to be made may need),
     "counts": {key: records seen} (count windows only),
     "dirty": {window id: window (a closed one ends with True) | None (removed)}}

``dirty`` holds the windows changed since the last flush; ``flush`` (before the shard's
checkpoint or transaction) turns them into window-table rows — one per window, however many
records changed it — and empties it, so a checkpoint always holds an empty ``dirty``.
``advance`` (about once a second) moves an idle shard's watermark with the wall clock.

Rules (docs/internals/windows-design.md): watermark = largest event time − lateness, never
backwards; a window ``[start, end)`` closes when the watermark reaches ``end + grace``; a
record all of whose windows are closed is late and goes to the exceptions stream (stage
``late``) naming them; a closed window's row is removed (a tombstone) when the watermark
reaches ``end + grace + retention``. A session ``[first, last + 1)`` takes a record less than
``gap`` from it (merging the sessions it bridges, the merged rows removed by tombstones) and
closes at ``last + gap + grace``. Sliding windows (Kafka Streams') are made from the records
they hold when a record defines them. Count windows (``Counted``) close at their n-th record.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from millstream.errors import InvalidRequestError
from millstream.faults import fault_point
from millstream.runtime._copartition import KeyCheck
from millstream.service._aggregates import Aggregate, Count, json_value
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

        def of_field(value: Any, timestamp: int) -> int:
            """The common case first: a number in a model's or a dict's field."""
            found = (value.get(name) if type(value) is dict
                     else getattr(value, name, None))
            kind = type(found)
            if (kind is float or kind is int) and found == found:  # not NaN
                return round(found * 1000)  # type: ignore[operator]
            return of(value, timestamp)  # the rest, and the errors

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
                and math.isfinite(found):
            return round(found * 1000)
        raise InvalidRequestError(
            f"event time {what} is {found!r}; it must be a datetime or a number of seconds "
            "since the epoch")

    return of if callable(time) else of_field


def _schedule(data: dict[str, Any], at: int, wid: str) -> None:
    """Note that window ``wid`` closes when the watermark reaches ``at``."""
    due = data.get("due")
    if due is None:
        due = data["due"] = []
    heapq.heappush(due, [at, wid])
    nxt = data["next"]
    if nxt is None or at < nxt:
        data["next"] = at


def _due(data: dict[str, Any], after_end: int) -> list[list[Any]]:
    """The shard's heap of ``[closing time, window id]`` (stale entries are skipped when
    popped), made from the open windows when a shard has none, or again when stale entries
    outnumber the open windows."""
    due: list[list[Any]] | None = data.get("due")
    open_ = data["open"]
    if due is None or len(due) > 2 * len(open_) + 64:
        due = data["due"] = [[w[2] + after_end, wid] for wid, w in open_.items()]
        heapq.heapify(due)
    return due


def _new_shard(data: dict[str, Any]) -> None:
    data["wm"] = None
    data["next"] = None
    data["due"] = []
    data["n"] = 0
    data["open"] = {}
    data["expire"] = []
    data["dirty"] = {}


class WindowOperator:
    """The handler of a windowed service (an ``Operator``); see the module docstring."""

    def __init__(self, declared: WindowedService, time: TimeOf) -> None:
        self.declared = declared
        window = declared.window
        self._window = window
        self._spans = (window.spans if isinstance(window, Tumbling | Hopping) else None)
        self._tumbling = window.size_ms if isinstance(window, Tumbling) else 0
        #: a session ``[first, last + 1)`` closes ``gap`` after its last record: the end
        #: plus this, plus grace, is when the watermark closes a window
        self._extra = window.gap_ms - 1 if isinstance(window, Session) else 0
        self._session = isinstance(window, Session)
        self._time = event_time_of(time)
        agg: Aggregate = declared.aggregate
        self._agg = agg
        self._table = declared.table.stream
        self._input = declared.input
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

    def __call__(self, value: Any, ctx: Context, keys: KeyCheck | None = None) -> None:
        # Whatever can fail (the key, the event time, the field, the aggregation) runs
        # before the shard changes: a record the handler fails on leaves no trace in it.
        record = ctx.record
        if keys is not None and record.stream == self._input:  # keyed, and read from the
            keys(record)  # partition its key belongs in (a replay comes from elsewhere)
        shard = ctx.state
        data = shard.data
        if "open" not in data:
            _new_shard(data)
        raw = record.key
        key = raw.decode("utf-8", "replace") if raw is not None else ""
        agg = self._agg
        pick = agg.pick
        v = value if pick is None else pick(value)
        spans = self._spans
        if spans is None:
            if isinstance(self._window, Counted):  # no time
                self._count(data, key, raw, v, ctx)
            else:
                t = self._time(value, record.timestamp)
                if (self._sessions(data, key, raw, v, t, ctx) if self._session
                        else self._sliding(data, key, raw, v, t, ctx)):
                    self._watermark(data, t, ctx)
            data["n"] += 1
            shard.changed = True
            return
        t = self._time(value, record.timestamp)
        wm = data["wm"]
        grace = self._grace
        open_ = data["open"]
        size = self._tumbling
        if size:  # the common case, without the lists of the general one below
            start = t - t % size
            end = start + size
            if wm is not None and end + grace <= wm:
                data["n"] += 1
                shard.changed = True
                ctx.report(LateRecord(key, t, [(start, end)], wm, grace))
                return
            wid = f"{key}/{start:015d}"
            w = open_.get(wid)
            if w is None:
                w = open_[wid] = [key, start, end, agg.add(agg.initial(), v, t), 1]
                _schedule(data, end + grace, wid)
            else:
                w[3] = agg.add(w[3], v, t)
                w[4] += 1
            data["n"] += 1
            shard.changed = True
            data["dirty"][wid] = w
            if self._updates and self._output is not None:
                ctx.emit(self._output, _row(w, agg, False), key=raw)
            mark = t - self._lateness
            if wm is None or mark > wm:
                data["wm"] = mark
                nxt, expire = data["next"], data["expire"]
                if (nxt is not None and mark >= nxt) or (expire and expire[0][0] <= mark):
                    self._close(data, mark, ctx.emit)
            return
        mine = spans(t)
        hits: list[tuple[str, list[Any] | None, int, int, Any]] = []
        for start, end in mine:
            if wm is not None and end + grace <= wm:
                continue  # closed
            wid = f"{key}/{start:015d}"
            w = open_.get(wid)
            hits.append((wid, w, start, end,
                         agg.add(agg.initial() if w is None else w[3], v, t)))
        data["n"] += 1
        shard.changed = True
        if not hits:
            assert wm is not None
            ctx.report(LateRecord(key, t, mine, wm, grace))
            return
        dirty = data["dirty"]
        for wid, w, start, end, acc in hits:
            if w is None:
                w = open_[wid] = [key, start, end, acc, 1]
                _schedule(data, end + grace, wid)
            else:
                w[3] = acc
                w[4] += 1
            dirty[wid] = w
            if self._updates and self._output is not None:
                ctx.emit(self._output, _row(w, agg, False), key=raw)
        self._watermark(data, t, ctx)

    def _watermark(self, data: dict[str, Any], t: int, ctx: Context) -> None:
        """A record at ``t`` moves the watermark (never back), closing what it passes."""
        mark = t - self._lateness
        wm = data["wm"]
        if wm is None or mark > wm:
            data["wm"] = mark
            nxt, expire = data["next"], data["expire"]
            if (nxt is not None and mark >= nxt) or (expire and expire[0][0] <= mark):
                self._close(data, mark, ctx.emit)

    def _sessions(self, data: dict[str, Any], key: str, raw: bytes | None, v: Any, t: int,
                  ctx: Context) -> bool:
        """A record of a session window: it joins (and bridges) the key's open sessions
        less than ``gap`` away, or starts one; False if it is late (no open session takes it
        and one of its own would be closed already)."""
        gap = self._window.gap_ms  # type: ignore[union-attr]
        agg, grace = self._agg, self._grace
        open_, dirty = data["open"], data["dirty"]
        keys = data.setdefault("keys", {})
        mine: list[str] = keys.get(key, [])
        near = [wid for wid in mine
                if open_[wid][1] - gap < t < open_[wid][2] - 1 + gap]
        wm = data["wm"]
        if not near and wm is not None and t + gap + grace <= wm:
            ctx.report(LateRecord(key, t, [(t, t + 1)], wm, grace))
            return False
        start, end, acc, records = t, t + 1, None, 0
        near.sort(key=lambda w: open_[w][1])
        for wid in near:
            w = open_[wid]
            start, end = min(start, w[1]), max(end, w[2])
            acc = w[3] if acc is None else agg.merge(acc, w[3])
            records += w[4]
        acc = agg.add(agg.initial() if acc is None else acc, v, t)
        for wid in near:  # merged into one: their rows go (unless the merged one keeps it)
            del open_[wid]
            dirty[wid] = None
        wid = f"{key}/{start:015d}"
        w = open_[wid] = [key, start, end, acc, records + 1]
        dirty[wid] = w
        keys[key] = [*(x for x in mine if x not in near), wid]
        _schedule(data, end + self._extra + grace, wid)
        if self._updates and self._output is not None:
            ctx.emit(self._output, _row(w, agg, False), key=raw)
        return True

    def _sliding(self, data: dict[str, Any], key: str, raw: bytes | None, v: Any, t: int,
                 ctx: Context) -> bool:
        """A record of a sliding window (inclusive ``[start, start + size]``, kept as
        ``[start, start + size + 1)``): it counts in the key's open windows that contain it,
        and makes the windows it defines — the one ending at it, the one just after it if a
        record falls in that, and the one just after each earlier record it is the first to
        fall in — each from the key's records in its span (kept while a window that may
        still be made can need them). False if it is late: every window that could contain
        it is closed."""
        size = self._window.size_ms  # type: ignore[union-attr]
        agg, grace, wm = self._agg, self._grace, data["wm"]
        if wm is not None and t + size + 1 + grace <= wm:
            ctx.report(LateRecord(key, t, [(t, t + size + 1)], wm, grace))
            return False
        kept = data.setdefault("records", {})
        mine: list[list[Any]] = kept.get(key, [])
        at = bisect.bisect_right([r[0] for r in mine], t)  # after equal times: arrival order
        # kept in the state, so as JSON (a model as its dict; nothing for a count)
        mine = [*mine[:at], [t, None if type(agg) is Count else json_value(v)], *mine[at:]]
        open_, dirty = data["open"], data["dirty"]
        keys = data.setdefault("keys", {})
        wids: list[str] = keys.get(key, [])
        updated: dict[str, list[Any]] = {}
        for wid in wids:
            w = open_[wid]
            if w[1] <= t < w[2]:
                updated[wid] = [w[0], w[1], w[2], agg.add(w[3], v, t), w[4] + 1]
        starts = {t - size}  # the window ending at t
        if any(t < r[0] <= t + 1 + size for r in mine):
            starts.add(t + 1)  # the one just after t, which a later record is in
        starts.update(r[0] + 1 for r in mine if t - size - 1 <= r[0] < t)
        made: list[str] = []
        for start in sorted(starts):
            wid = f"{key}/{start:015d}"
            end = start + size + 1
            if wid in updated or wid in open_ or (wm is not None and end + grace <= wm):
                continue  # it exists, or it would be closed already
            acc, n = agg.initial(), 0
            for rt, rv in mine:
                if start <= rt < end:
                    acc, n = agg.add(acc, rv, rt), n + 1
            updated[wid] = [key, start, end, acc, n]
            made.append(wid)
        mark = t - self._lateness if wm is None else max(wm, t - self._lateness)
        kept[key] = [r for r in mine if r[0] > mark - size - 1 - grace]
        if made:
            keys[key] = [*wids, *made]
        for wid, w in updated.items():
            if wid in made:
                _schedule(data, w[2] + grace, wid)
            open_[wid] = w
            dirty[wid] = w
            if self._updates and self._output is not None:
                ctx.emit(self._output, _row(w, agg, False), key=raw)
        return True

    def _count(self, data: dict[str, Any], key: str, raw: bytes | None, v: Any,
               ctx: Context) -> None:
        """A record of a count window: the key's open window takes it; the n-th closes it."""
        size = self._window.n  # type: ignore[union-attr]
        counts = data.setdefault("counts", {})
        seen = counts.get(key, 0)
        start = seen - seen % size
        wid = f"{key}/{start:015d}"
        open_ = data["open"]
        w = open_.get(wid)
        acc = self._agg.add(self._agg.initial() if w is None else w[3], v, seen)
        if w is None:
            w = open_[wid] = [key, start, start + size, acc, 0]
        w[3] = acc
        w[4] += 1
        counts[key] = seen + 1
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
        grace, agg, output, extra = self._grace, self._agg, self._output, self._extra
        open_, dirty = data["open"], data["dirty"]
        closing: list[tuple[int, str, str]] = []
        if data["next"] is not None and wm >= data["next"]:  # else only expiries are due
            due = _due(data, extra + grace)
            taken: set[str] = set()
            while due and due[0][0] <= wm:  # closing times, earliest first: no scan
                at, wid = heapq.heappop(due)
                w = open_.get(wid)
                if w is None or w[2] + extra + grace != at or wid in taken:
                    continue  # merged away, closed, its session grew, or noted twice
                taken.add(wid)
                closing.append((w[2], w[0], wid))
            data["next"] = due[0][0] if due else None
        expire = data["expire"]
        retention = self._retention
        keys = data.get("keys")
        for end, key, wid in sorted(closing):
            w = open_.pop(wid)
            w.append(True)
            dirty[wid] = w
            if keys is not None:  # sessions: the key's open ones
                left = [x for x in keys[key] if x != wid]
                if left:
                    keys[key] = left
                else:
                    del keys[key]
            if retention is not None:
                heapq.heappush(expire, [end + extra + grace + retention, wid])
            if output is not None:
                emit(output, _row(w, agg, True), key=w[0].encode())
        kept = data.get("records")
        if kept and closing:  # sliding: records no window still to be made can need
            oldest = wm - self._window.size_ms - 1 - grace  # type: ignore[union-attr]
            for key in list(kept):
                left = [r for r in kept[key] if r[0] > oldest]
                if left:
                    kept[key] = left
                else:
                    del kept[key]
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
        if idle is None or isinstance(self._window, Counted) \
                or (now - seen[2]) * 1000 < idle:
            return
        mark = int(now * 1000) - self._lateness - idle
        wm = data["wm"]
        if wm is not None and mark <= wm:
            return
        data["wm"] = mark  # kept with the next checkpoint that has a reason to be written
        nxt, expire = data["next"], data["expire"]
        if (nxt is not None and mark >= nxt) or (expire and expire[0][0] <= mark):
            shard.changed = True  # something closes or expires: a checkpoint is due
            self._close(data, mark, out.emit)


def _row(w: list[Any], agg: Aggregate, closed: bool) -> WindowRow:
    return WindowRow.model_construct(key=w[0], start=w[1], end=w[2], value=agg.result(w[3]),
                                     records=w[4], closed=closed)
