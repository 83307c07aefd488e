"""Declaring a windowed service: ``app.windowed(...)`` (``declare_windowed``) checks the
settings, declares the window table (``WindowRow`` rows, indexed on ``key``) and a stateful
service whose handler is the window operator (``runtime._windowing``), and returns a
``WindowedService``: the handle to its table and to the current windows of a key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from millstream.codecs import codec_for
from millstream.errors import InvalidRequestError
from millstream.service._aggregates import Aggregate
from millstream.service._shadow import shadow_table
from millstream.service._stream import Stream, stream_name
from millstream.service._table_output import TableOutput
from millstream.service._window_rows import WindowRow
from millstream.service._windows import (
    Counted,
    Hopping,
    Seconds,
    Session,
    Sliding,
    Tumbling,
    Window,
    duration_ms,
)

if TYPE_CHECKING:
    from millstream.service._app import App
    from millstream.service._tables import ServiceTables
    from millstream.tables._base import Tables

__all__ = ["EmitMode", "TimeOf", "WindowedService", "declare_windowed"]

#: when results come out: at every change, or once when the window closes
EmitMode = Literal["final", "updates"]
#: where a record's event time comes from: None (the record's timestamp), a payload field
#: name, or a function of the payload; a field or function gives a ``datetime`` (naive =
#: UTC) or a number of seconds since the epoch
TimeOf = str | Callable[[Any], datetime | int | float] | None


@dataclass(frozen=True, slots=True)
class WindowedService:
    """What ``app.windowed`` declared: the service ``name``, its window ``table`` (a
    ``TableOutput``) and the settings it runs with (milliseconds)."""

    name: str
    input: str
    window: Window
    aggregate: Aggregate
    table: TableOutput
    output: str | None
    emit: EmitMode
    lateness_ms: int
    grace_ms: int
    idle_timeout_ms: int | None
    retention_ms: int | None

    def current(self, tables: Tables | ServiceTables, key: str | bytes, *,
                shadow: str | None = None, closed: bool = False) -> list[WindowRow]:
        """The windows of ``key`` in the window table, newest first: the open ones (also
        the closed ones still kept, with ``closed=True``). ``tables``: the platform's
        (``open_tables()``) or a handler's ``ctx.tables``; ``shadow``: read a shadow
        version's own table."""
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        name = self.table.name if shadow is None else shadow_table(self.table.name, shadow)
        where: dict[str, str | bool] = {"key": text} if closed else {"key": text,
                                                                      "closed": False}
        rows = [row for _, row in tables.table(name).query(where, model=WindowRow)]
        return sorted(rows, key=lambda row: row.start, reverse=True)


def declare_windowed(
    app: App, name: str, stream: Stream[Any] | str, *, window: Window, aggregate: Aggregate,
    time: TimeOf = None, lateness: Seconds = 0, grace: Seconds = 0,
    idle_timeout: Seconds | None = 30, emit: EmitMode = "final",
    output: Stream[Any] | str | None = None, table: str | None = None,
    retention: Seconds | None = 86400, exactly_once: bool | None = None,
    commit_interval: float = 0.2, checkpoint_interval: float = 5.0,
    checkpoint_records: int = 100_000, max_batch: int = 500,
) -> WindowedService:
    """Declare service ``name`` aggregating ``stream`` per record key over ``window``
    (``Tumbling``, ``Hopping``, ``Sliding``, ``Session``, ``Counted``) with ``aggregate``
    (``Count()``, ``Sum(f)`` ...), keeping one row per key and window in table ``table``
    (default: ``name``) and, with ``output``, sending results (``WindowRow``) there: each
    change (``emit="updates"``) or once per window when it closes (``"final"``).

    Event time is the record's timestamp, or ``time``: a payload field or a function of
    the payload giving a ``datetime`` (naive = UTC) or seconds since the epoch. Each
    partition's watermark is the largest event time seen minus ``lateness``; a window
    ``[start, end)`` closes when the watermark reaches ``end + grace`` (watermark >=
    ``end + grace``); a record whose every window closed goes to the exceptions stream with
    stage ``late``. A partition without records
    for ``idle_timeout`` seconds of wall-clock time moves its watermark with the clock
    (None: never). A closed window's row is removed ``retention`` seconds of event time
    after it closed (None: kept). Durations are seconds or ``timedelta``. The rest is as
    for ``service`` (the service is stateful; ``exactly_once`` None: the app's).
    Returns the declaration: ``.table``, ``.current(tables, key)``."""
    from millstream.runtime._windowing import WindowOperator  # the runtime builds on this

    if not isinstance(window, Tumbling | Hopping | Sliding | Session | Counted):
        raise InvalidRequestError(
            f"windowed service {name!r}: window={window!r} must be Tumbling(size), "
            "Hopping(size, every), Sliding(size), Session(gap) or Counted(n)")
    if not isinstance(aggregate, Aggregate):
        raise InvalidRequestError(
            f"windowed service {name!r}: aggregate={aggregate!r} must be Count(), "
            "Sum(field), Min(field), Max(field), Mean(field), Latest(), Collect() or "
            "Reducer(initial, add)")
    if emit not in ("final", "updates"):
        raise InvalidRequestError(
            f"windowed service {name!r}: emit={emit!r} must be 'final' (a result when "
            "a window closes) or 'updates' (a result at every change)")
    if time is not None and not callable(time) and not (isinstance(time, str) and time):
        raise InvalidRequestError(
            f"windowed service {name!r}: time={time!r} must be None (the record "
            "timestamp), a payload field name or a function of the payload")
    _check_fields(app, name, stream, time, aggregate)
    what = f"windowed service {name!r}: "  # durations, checked before anything is declared
    lateness_ms = duration_ms(lateness, what + "lateness", zero=True)
    grace_ms = duration_ms(grace, what + "grace", zero=True)
    idle_ms = None if idle_timeout is None else duration_ms(idle_timeout, what + "idle_timeout")
    retention_ms = (None if retention is None
                    else duration_ms(retention, what + "retention", zero=True))
    rows = app.table(table or name, WindowRow, indexes=["key", "start"])
    outputs: list[Stream[Any] | str | TableOutput] = [rows]
    if output is not None:
        out = app.streams.get(stream_name(output))
        if out is not None and out.codec.description not in (
                codec_for(WindowRow).description, codec_for(dict).description):
            raise InvalidRequestError(
                f"windowed service {name!r}: output {out.name!r} carries "
                f"{out.codec.description}, but results are WindowRow; declare it "
                f"app.stream({out.name!r}, WindowRow)")
        outputs.append(output if out is not None else app.stream(str(output), WindowRow))
    declared = WindowedService(
        name=name, input=stream_name(stream), window=window, aggregate=aggregate,
        table=rows, output=None if output is None else stream_name(output), emit=emit,
        lateness_ms=lateness_ms, grace_ms=grace_ms, idle_timeout_ms=idle_ms,
        retention_ms=retention_ms)
    operator = WindowOperator(declared, time)
    from millstream.runtime._copartition import opener
    app.service(name, inputs=[stream], outputs=outputs, stateful=True,
                exactly_once=exactly_once,
                lifespan=opener(name, (stream_name(stream),), "windowed service"),
                 max_batch=max_batch, commit_interval=commit_interval,
                 checkpoint_interval=checkpoint_interval,
                 checkpoint_records=checkpoint_records)(operator)
    spec = app.services[name]
    # the operator is deterministic: retrying a record that failed cannot help
    spec.retry = dataclasses.replace(spec.retry, attempts=1)
    spec.description = (
        f"{type(window).__name__} windows of {declared.input}, {aggregate!r}")
    return declared


def _check_fields(app: App, name: str, stream: Stream[Any] | str, time: TimeOf,
                  aggregate: Aggregate) -> None:
    """A field named for the event time or the aggregate must be one of the input's model
    (when the stream carries a pydantic model): refused when declared, not record by record."""
    declared = app.streams.get(stream_name(stream))
    if declared is None:
        return
    model = getattr(declared.codec, "model", None)
    if model is None:
        return
    fields = model.model_fields
    for what, field in (("time", time), (f"aggregate {aggregate!r}",
                                         getattr(aggregate, "field", None))):
        if isinstance(field, str) and field not in fields:
            raise InvalidRequestError(
                f"windowed service {name!r}: {what} names field {field!r}, which "
                f"{model.__name__} (the payload of {declared.name!r}) does not have; its "
                f"fields: {', '.join(fields)}")
