"""Declaring joins and re-keying: what ``app.join_table``, ``app.join_streams``,
``app.join_asof`` and ``app.rekey`` check and declare.

A join is a stateful service whose handler millstream writes — an operator
(``runtime._joining_operators``) — so it has what every stateful service has: state per
partition number checkpointed with its input offsets, exactly-once when the app is,
rebalances, replay, shadows, the exceptions stream and metrics. Its inputs must be
co-partitioned (``runtime._copartition``): the same partition count, checked here and when
the service starts, and records keyed by the join key, checked per record; ``rekey`` declares
the service that re-sends a stream keyed by a field into an intermediate stream.

Durations are seconds (a number) or ``timedelta``s; event times come from the record's
timestamp (``time=None``) or a payload field holding a ``datetime`` or seconds since the
epoch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from millstream.errors import InvalidRequestError
from millstream.service._stream import Stream
from millstream.service._table_output import TableOutput
from millstream.service._windows import duration_ms

if TYPE_CHECKING:
    from millstream.codecs import Codec
    from millstream.service._app import App
    from millstream.service._context import Context

from millstream.service._join_errors import LateJoinRecord, UnmatchedJoinRecord

__all__ = ["Join", "Joins", "LateJoinRecord", "TimeField", "UnmatchedJoinRecord", "join_asof",
           "join_streams", "join_table", "rekey"]

#: where a record's event time is: None (its timestamp), a payload field, or a function
TimeField = str | Callable[[Any], datetime | int | float] | None
Duration = float | int | timedelta
V = TypeVar("V")
T = TypeVar("T")
O = TypeVar("O")  # noqa: E741

#: the two sides, as the operators number them (``runtime._joining_interval``)
_LEFT, _RIGHT = 0, 1


@dataclass(frozen=True, slots=True)
class Join:
    """A declared join: its service's ``name``, its ``kind`` (``"table"``, ``"streams"``,
    ``"asof"``), its two ``inputs`` (stream side or left first) and its ``output`` stream."""

    name: str
    kind: str
    inputs: tuple[str, str]
    output: str


def _millis(value: object, what: str, service: str, *, positive: bool = False) -> int:
    """A duration in ms, as the windows read one; refuses what is not one (or ≤ 0 when
    ``positive``)."""
    try:
        return duration_ms(value, what, zero=not positive)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"join {service!r}: {exc}") from None


def _how(value: object, service: str) -> str:
    if value in ("inner", "left", "outer"):
        return str(value)
    raise InvalidRequestError(
        f"join {service!r}: how={value!r} must be 'inner' (pairs only), 'left' (also each "
        "left record that met no partner, with None) or 'outer' (also each record of either "
        "side that met none)")


def _idle(value: object, service: str) -> int | None:
    return None if value is None else _millis(value, "idle_timeout", service, positive=True)


def _time(value: object, what: str, service: str) -> TimeField:
    if value is None or callable(value) or (isinstance(value, str) and value):
        return cast(TimeField, value)
    raise InvalidRequestError(
        f"join {service!r}: {what}={value!r} must be None (the record's timestamp), a "
        "payload field's name, or a function of the value returning its time")


def _input(app: App, stream: object, what: str, service: str) -> str:
    """The declared stream ``stream`` names; a join needs its payload type."""
    if isinstance(stream, Stream):
        app.stream(stream.name, stream.codec, partitions=stream.partitions,
                   retention=stream.retention)
        return stream.name
    if isinstance(stream, str) and stream in app.streams:
        return stream
    if isinstance(stream, TableOutput) and stream.stream in app.streams:
        return stream.stream  # a table a service writes: its changelog stream
    raise InvalidRequestError(
        f"join {service!r}: {what} {stream!r} is not a declared stream; declare it with "
        "app.stream(name, Payload) and pass its handle")


def _output(app: App, output: object, service: str) -> str:
    if isinstance(output, TableOutput):
        return output.stream
    if isinstance(output, Stream):
        return output.name
    if isinstance(output, str) and output:
        return output
    raise InvalidRequestError(
        f"join {service!r}: output={output!r} must be a stream (app.stream(name, Payload)) "
        "or a table (app.table(...)) for the joined records")


def _combine(combine: object, service: str) -> Callable[[Any, Any], Any]:
    if not callable(combine):
        raise InvalidRequestError(
            f"join {service!r}: combine={combine!r} must be a function of the two joined "
            "values returning the output value (or None to emit nothing)")
    try:
        params = [p for p in inspect.signature(combine).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return cast(Callable[[Any, Any], Any], combine)  # a builtin: nothing to check
    if len(params) < 2 and not any(p.kind == p.VAR_POSITIONAL
                                   for p in inspect.signature(combine).parameters.values()):
        raise InvalidRequestError(
            f"join {service!r}: combine must take the two joined values (left, right), not "
            f"{len(params)} parameter{'s' if len(params) != 1 else ''}")
    return cast(Callable[[Any, Any], Any], combine)


def _flag(value: object, what: str, service: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"join {service!r}: {what}={value!r} must be True or False")
    return value


def _prepare(app: App, name: str, first: object, second: object,
             names: tuple[str, str]) -> tuple[str, str, dict[int, Codec[Any]]]:
    """Both inputs, checked; their codecs by side."""
    if not isinstance(name, str):
        raise InvalidRequestError(f"a join is named by a string (its service), not {name!r}")
    a, b = _input(app, first, names[0], name), _input(app, second, names[1], name)
    if a == b:
        raise InvalidRequestError(
            f"join {name!r}: {names[0]} and {names[1]} are both {a!r}; a join reads two "
            "different streams")
    from millstream.runtime._copartition import check_declared
    check_declared(name, {a: app.streams[a].partitions, b: app.streams[b].partitions})
    return a, b, {_LEFT: app.streams[a].codec, _RIGHT: app.streams[b].codec}


def _declare(app: App, name: str, kind: str, inputs: tuple[str, str], output: object,
             operator: Callable[..., Any], exactly_once: bool | None,
             description: str) -> Join:
    from millstream.runtime._copartition import opener
    outputs: list[TableOutput | str] = [
        output if isinstance(output, TableOutput) else _output(app, output, name)]
    app.service(name, inputs=list(inputs), outputs=outputs, stateful=True,
                exactly_once=exactly_once, lifespan=opener(name, inputs))(operator)
    app.services[name].description = description
    return Join(name, kind, inputs, _output(app, output, name))


def join_table(app: App, name: str, stream: object, table: object, combine: object, *,
               output: object, inner: bool = False, report_unmatched: bool = False,
               exactly_once: bool | None = None) -> Join:
    """Declare a stream–table join (see ``Joins.join_table``)."""
    from millstream.runtime._joining_operators import TableJoin
    a, b, codecs = _prepare(app, name, stream, table, ("stream", "table"))
    operator = TableJoin(name, a, b, codecs, _combine(combine, name), _output(app, output, name),
                         inner=_flag(inner, "inner", name),
                         report=_flag(report_unmatched, "report_unmatched", name))
    return _declare(app, name, "table", (a, b), output, operator, exactly_once,
                    f"joins {a} with the rows of {b} (stream–table)")


def join_streams(app: App, name: str, left: object, right: object, combine: object, *,
                 within: Duration, output: object, time: TimeField = None,
                 right_time: TimeField | str = "same", lateness: Duration = 0,
                 grace: Duration = 0, idle_timeout: Duration | None = 30,
                 how: str = "inner", exactly_once: bool | None = None) -> Join:
    """Declare a stream–stream join within a time interval (see ``Joins.join_streams``)."""
    from millstream.runtime._joining import EventTime
    from millstream.runtime._joining_interval import IntervalBuffers
    from millstream.runtime._joining_operators import IntervalJoin
    a, b, codecs = _prepare(app, name, left, right, ("left", "right"))
    first = _time(time, "time", name)
    second = first if right_time == "same" else _time(right_time, "right_time", name)
    late = _millis(lateness, "lateness", name)
    buffers = IntervalBuffers(_millis(within, "within", name), _millis(grace, "grace", name))
    operator = IntervalJoin(name, a, b, codecs, _combine(combine, name),
                            _output(app, output, name),
                            times={_LEFT: EventTime(first, late), _RIGHT: EventTime(second, late)},
                            buffers=buffers, idle_ms=_idle(idle_timeout, name),
                            how=_how(how, name))
    return _declare(app, name, "streams", (a, b), output, operator, exactly_once,
                    f"joins {a} with {b} within {buffers.within / 1000:g} s (stream–stream)")


def join_asof(app: App, name: str, stream: object, table: object, combine: object, *,
              output: object, time: TimeField = None, table_time: TimeField | str = "same",
              lateness: Duration = 0, grace: Duration = 0,
              tolerance: Duration | None = None, inner: bool = False,
              report_unmatched: bool = False, idle_timeout: Duration | None = 30,
              exactly_once: bool | None = None) -> Join:
    """Declare an as-of join (see ``Joins.join_asof``)."""
    from millstream.runtime._joining import EventTime
    from millstream.runtime._joining_asof import AsofHistory
    from millstream.runtime._joining_operators import AsofJoin
    a, b, codecs = _prepare(app, name, stream, table, ("stream", "table"))
    first = _time(time, "time", name)
    second = first if table_time == "same" else _time(table_time, "table_time", name)
    late = _millis(lateness, "lateness", name)
    history = AsofHistory(_millis(grace, "grace", name),
                          None if tolerance is None else _millis(tolerance, "tolerance", name))
    operator = AsofJoin(name, a, b, codecs, _combine(combine, name), _output(app, output, name),
                        times={_LEFT: EventTime(first, late), _RIGHT: EventTime(second, late)},
                        history=history, inner=_flag(inner, "inner", name),
                        report=_flag(report_unmatched, "report_unmatched", name),
                        idle_ms=_idle(idle_timeout, name))
    return _declare(app, name, "asof", (a, b), output, operator, exactly_once,
                    f"joins {a} with the versions of {b} as of each record's time")


class _Rekey:
    """The handler of a re-keying service: each value again, keyed by ``by(value)``."""

    def __init__(self, service: str, by: Callable[[Any], object], into: str) -> None:
        self.__name__ = service
        self._by = by
        self._into = into

    def __call__(self, value: Any, ctx: Context) -> None:
        key = self._by(value)
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str | bytes) or not key:
            raise InvalidRequestError(
                f"rekey {self.__name__!r}: by() returned {key!r} for this record; it must "
                "return the new key as a non-empty str, bytes or int")
        ctx.emit(self._into, value, key=key)


def rekey(app: App, name: str, stream: object, by: object, into: object, *,
          partitions: int | None = None, exactly_once: bool | None = None) -> Stream[Any]:
    """Declare a service re-sending ``stream`` keyed by ``by(value)`` into ``into`` (see
    ``Joins.rekey``); returns ``into``'s handle."""
    source = _input(app, stream, "stream", name)
    if not callable(by):
        raise InvalidRequestError(
            f"rekey {name!r}: by={by!r} must be a function of the value returning its new key "
            "(e.g. by=lambda order: order.customer_id)")
    codec = app.streams[source].codec
    if isinstance(into, Stream):
        target = app.stream(into.name, into.codec, partitions=into.partitions,
                            retention=into.retention)
        if partitions is not None and target.partitions != partitions:
            raise InvalidRequestError(
                f"rekey {name!r}: into={into.name!r} has {target.partitions} partitions, "
                f"not partitions={partitions}")
    elif isinstance(into, str) and into:
        target = app.stream(into, codec, partitions=partitions)
    else:
        raise InvalidRequestError(
            f"rekey {name!r}: into={into!r} must name the intermediate stream (or be its "
            "handle)")
    if target.codec.description != codec.description:
        raise InvalidRequestError(
            f"rekey {name!r}: {source!r} carries {codec.description} but {target.name!r} "
            f"carries {target.codec.description}; re-keying sends the same values")
    if target.name == source:
        raise InvalidRequestError(
            f"rekey {name!r}: into must be another stream than {source!r}")
    app.service(name, inputs=[source], outputs=[target.name],
                exactly_once=exactly_once)(_Rekey(name, by, target.name))
    app.services[name].description = f"re-keys {source} into {target.name}"
    return target


class Joins:
    """``App``'s join methods (``App`` inherits them; each declares one service)."""

    def join_table(self, name: str, stream: Stream[V], table: Stream[T],
                   combine: Callable[[V, T | None], O | None], *,
                   output: Stream[O] | TableOutput, inner: bool = False,
                   report_unmatched: bool = False, exactly_once: bool | None = None) -> Join:
        """Declare service ``name``, a stream–table join (Kafka Streams' KStream–KTable
        join): ``table``'s records — the changelog a table is fed from, keyed by row key —
        keep each key's current row; each record of ``stream`` is combined with its key's
        current row, ``combine(value, row)`` (``row`` None when the key has none; with
        ``inner=True`` such a record is dropped instead, and reported to the exceptions
        stream if ``report_unmatched``), and what that returns goes to ``output`` keyed by
        the key (None: nothing); ``combine`` must not change ``row`` (one decoded row serves
        every record of its key). The rows are kept in memory: the first time a partition
        is handled in a run, the join loads its rows from ``table``'s start to its end (so
        ``table`` must keep them: compacted, or retained forever), and a join started on
        existing data sees the rows already written. A tombstone (a None value) on
        ``table`` deletes the row, where the table's payload can carry None. Both inputs
        must be co-partitioned (``rekey``)."""
        return join_table(cast("App", self), name, stream, table, combine, output=output,
                          inner=inner, report_unmatched=report_unmatched,
                          exactly_once=exactly_once)

    def join_streams(self, name: str, left: Stream[V], right: Stream[T],
                     combine: Callable[[V, T], O | None], *, within: float | timedelta,
                     output: Stream[O] | TableOutput, time: TimeField = None,
                     right_time: TimeField | str = "same", lateness: float | timedelta = 0,
                     grace: float | timedelta = 0,
                     idle_timeout: float | timedelta | None = 30,
                     how: Literal["inner", "left", "outer"] = "inner",
                     exactly_once: bool | None = None) -> Join:
        """Declare service ``name``, a stream–stream join within a time interval (Kafka
        Streams' windowed KStream–KStream join): records of ``left`` and ``right`` with one
        key whose event times are at most ``within`` apart are combined once per pair,
        ``combine(left_value, right_value)``, into ``output``; with ``how="left"`` each
        left record that met no partner is also combined with None (``combine(left,
        None)``), with ``"outer"`` each record of either side (``combine(None, right)``),
        once no partner can come any more (leftJoin and outerJoin in Kafka Streams). Event
        time: ``time`` (None: the record timestamp; a payload field holding a datetime or
        epoch seconds; or a function of the value), ``right_time`` for the right side if it
        differs. The
        watermark is the largest time seen on the partition minus ``lateness``; a record
        coming after it passed its time + within + ``grace`` is late (reported to the
        exceptions stream, stage ``late``, not joined); a record is kept until the
        watermark passes its time + 2·within + grace. A partition with no record for
        ``idle_timeout`` seconds of wall-clock time moves its watermark to now − lateness −
        idle_timeout (None: never). Durations: seconds or timedeltas."""
        return join_streams(cast("App", self), name, left, right, combine, within=within,
                            output=output, time=time, right_time=right_time,
                            lateness=lateness, grace=grace, idle_timeout=idle_timeout,
                            how=how, exactly_once=exactly_once)

    def join_asof(self, name: str, stream: Stream[V], table: Stream[T],
                  combine: Callable[[V, T | None], O | None], *,
                  output: Stream[O] | TableOutput, time: TimeField = None,
                  table_time: TimeField | str = "same", lateness: float | timedelta = 0,
                  grace: float | timedelta = 0, tolerance: float | timedelta | None = None,
                  inner: bool = False, report_unmatched: bool = False,
                  idle_timeout: float | timedelta | None = 30,
                  exactly_once: bool | None = None) -> Join:
        """Declare service ``name``, an as-of join: each record of ``stream`` is combined
        with the latest record of ``table`` with its key at or before its event time (and
        at most ``tolerance`` before it, if given), ``combine(value, row)``, ``row`` None
        when there is none (dropped with ``inner=True``). A record is joined once the
        watermark passes its time + ``grace``, so the answer does not depend on which side
        came first; a record of either side coming after that is late (reported, not
        used). ``time``, ``table_time``, ``lateness`` and ``idle_timeout`` as for
        ``join_streams``."""
        return join_asof(cast("App", self), name, stream, table, combine, output=output,
                         time=time, table_time=table_time, lateness=lateness, grace=grace,
                         tolerance=tolerance, inner=inner, report_unmatched=report_unmatched,
                         idle_timeout=idle_timeout, exactly_once=exactly_once)

    def rekey(self, name: str, stream: Stream[V], by: Callable[[V], str | bytes | int],
              into: Stream[V] | str, *, partitions: int | None = None,
              exactly_once: bool | None = None) -> Stream[V]:
        """Declare service ``name`` re-sending every record of ``stream`` keyed by
        ``by(value)`` into the intermediate stream ``into`` (a handle, or a name declared
        here with ``stream``'s payload and ``partitions``, default the app's), and return
        ``into``'s handle: join that instead when ``stream`` is keyed by something else or
        has another partition count than the join's other input."""
        return rekey(cast("App", self), name, stream, by, into, partitions=partitions,
                     exactly_once=exactly_once)
