"""What a handler sees besides its value: the input record, emit, state and the platform.

One ``Context`` lives as long as the service; the runner points it at each record in turn.
Outputs emitted during an attempt are kept aside and sent only if the attempt succeeds, so a
retried record never sends twice what it emitted before failing. ``emit`` takes a stream's
handle (``Stream[T]`` and a ``T``, which mypy checks) or its name, and refuses at once a
stream the service does not declare as an output or a value its payload cannot carry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.service._app import Emit
from millstream.service._files import ServiceFiles
from millstream.service._shadow import shadow_stream
from millstream.service._stream import Stream, check_value, stream_name
from millstream.service._table_output import TableOutput
from millstream.service._tables import ServiceTables
from millstream.streams._base import Streams

if TYPE_CHECKING:
    from millstream.runtime._state import Shard

__all__ = ["Context", "ReportedFailure"]


class ReportedFailure(Exception):
    """What ``ctx.report("reason")`` records: a reason given by the handler itself."""

    #: the exception record's stage (a window operator's late records say ``late``)
    stage = "reported"


# exception records name an error by its class's module: give the public one
ReportedFailure.__module__ = "millstream.service"

T = TypeVar("T")


class Context:
    """The handler's view of the platform while it processes one record."""

    def __init__(self, app: str, service: str, streams: Streams, outputs: tuple[str, ...],
                 stateful: bool, *, declared: Mapping[str, Stream[Any]] | None = None,
                 ) -> None:
        self.app = app
        self.service = service
        self.streams = streams
        self.log = logging.getLogger(f"millstream.service.{service}")
        self._outputs = outputs
        self._stateful = stateful
        self._record: Record | None = None
        self._state: Shard | None = None
        self.attempt = 1
        self.emitted: list[Emit] = []
        #: failures reported with ``report`` during this attempt
        self.reported: list[BaseException] = []
        #: the shadow version this service runs as (``--shadow``), or None in production
        self.shadow: str | None = None
        #: the app's streams, to check what is emitted against its output's payload
        self._declared = declared or {}
        #: set by the runner when the platform has a file store / tables
        self._files: ServiceFiles | None = None
        self._tables: ServiceTables | None = None
        #: set by the runner: sends (output, value, key) at once
        self._emit_now: Callable[[str, Any, bytes | str | None], None] | None = None

    @property
    def record(self) -> Record:
        """The input record being processed (stream, partition, offset, key, headers ...)."""
        if self._record is None:
            raise InvalidRequestError("no record is being processed")
        return self._record

    @property
    def key(self) -> bytes | None:
        return self.record.key

    @property
    def state(self) -> Shard:
        """This partition's key-value state (declare the service ``stateful=True``)."""
        if self._state is None:
            raise InvalidRequestError(
                f"service {self.service!r} has no state; declare it with stateful=True"
            )
        return self._state

    @property
    def files(self) -> ServiceFiles:
        """The file store, naming what the handler writes after the input record (so a
        retry rewrites it). ``millstream run`` always has one."""
        if self._files is None:
            raise InvalidRequestError(
                f"service {self.service!r} runs without a file store; give its runner one "
                "(ServiceRunner(..., files=millstream.open_files(url)))")
        return self._files

    @property
    def tables(self) -> ServiceTables:
        """The platform's tables, in the service's namespace (a shadow's are its own)."""
        if self._tables is None:
            raise InvalidRequestError(
                f"service {self.service!r} runs without tables; give its runner them "
                "(ServiceRunner(..., tables=millstream.open_tables(url)))")
        return self._tables

    @overload
    def emit(self, stream: Stream[T], value: T, *, key: bytes | str | None = None) -> None: ...

    @overload
    def emit(self, stream: TableOutput | str | None, value: Any, *,
             key: bytes | str | None = None) -> None: ...

    def emit(self, stream: Stream[Any] | TableOutput | str | None, value: Any, *,
             key: bytes | str | None = None) -> None:
        """Send ``value`` to ``stream`` (one of the service's outputs, by handle or name;
        None when it has one) once this record's processing succeeds. ``key`` defaults to the
        input's key. A stream that is not an output, or a value its payload cannot carry, is
        refused at once (``InvalidRequestError``)."""
        self.emitted.append(Emit(self._resolve(stream, value, "ctx.emit"), value, key))

    def _resolve(self, stream: Stream[Any] | TableOutput | str | None, value: Any,
                 where: str) -> str:
        if stream is None:
            if len(self._outputs) != 1:
                raise InvalidRequestError(
                    f"service {self.service!r} has {len(self._outputs)} outputs; name the "
                    "stream to emit to"
                )
            name = self._outputs[0]
        else:
            name = stream_name(stream)
            if name not in self._outputs:
                raise InvalidRequestError(
                    f"service {self.service!r} emitted to {name!r}, which is not one of its "
                    f"outputs ({', '.join(self._outputs) or 'none'}); declare it in outputs=")
        declared = self._declared.get(name)
        if declared is not None:
            check_value(declared, value, f"{where} in service {self.service!r}")
        return name

    @overload
    def emit_now(self, stream: Stream[T], value: T, *,
                 key: bytes | str | None = None) -> None: ...

    @overload
    def emit_now(self, stream: TableOutput | str | None, value: Any, *,
                 key: bytes | str | None = None) -> None: ...

    def emit_now(self, stream: Stream[Any] | TableOutput | str | None, value: Any, *,
                 key: bytes | str | None = None) -> None:
        """Send ``value`` to ``stream`` (one of the service's outputs) at once, not when the
        record's processing succeeds: for progress and heartbeats while a long record is
        handled. A retried attempt sends again, and the record is sent even if the attempt
        then fails. A shadow's goes to its shadow stream, like every output."""
        if self._emit_now is None:
            raise InvalidRequestError("emit_now works only while the service runs")
        self._emit_now(self._resolve(stream, value, "ctx.emit_now"), value, key)

    def report(self, error: BaseException | str) -> None:
        """Record the input in the exceptions stream with ``error`` as the reason, without
        failing it: it is not retried, what the handler emits or returns still goes out and
        processing goes on. For inputs a service handles by design but someone should look
        at (say, an upload that is not a video). Like ``emit``, it takes effect only if this
        attempt succeeds. A string becomes a ``ReportedFailure``."""
        self.reported.append(ReportedFailure(error) if isinstance(error, str) else error)

    def output_stream(self, stream: Stream[Any] | str) -> str:
        """The stream the service's output ``name`` is written to: ``name`` in production,
        ``<name>.shadow.<version>`` when the service runs as a shadow. For records a handler
        sends itself (with a producer of its own) rather than by ``emit``; the runner creates
        that stream before the first record."""
        name = stream_name(stream)
        if name not in self._outputs:
            raise InvalidRequestError(
                f"service {self.service!r} has no output {name!r}; its outputs: "
                f"{', '.join(self._outputs) or 'none'}"
            )
        return name if self.shadow is None else shadow_stream(name, self.shadow)

    def _begin(self, record: Record, state: Shard | None, attempt: int) -> None:
        self._record = record
        self._state = state
        self.attempt = attempt
        self.emitted = []
        if self.reported:
            self.reported = []
        if self._files is not None:
            self._files._begin(record)
