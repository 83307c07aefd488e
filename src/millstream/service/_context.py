"""What a handler sees besides its value: the input record, emit, state and the platform.

One ``Context`` lives as long as the service; the runner points it at each record in turn.
Outputs emitted during an attempt are kept aside and sent only if the attempt succeeds, so a
retried record never sends twice what it emitted before failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.service._app import Emit
from millstream.service._shadow import shadow_stream
from millstream.streams._base import Streams

if TYPE_CHECKING:
    from millstream.runtime._state import Shard

__all__ = ["Context", "ReportedFailure"]


class ReportedFailure(Exception):
    """What ``ctx.report("reason")`` records: a reason given by the handler itself."""


# exception records name an error by its class's module: give the public one
ReportedFailure.__module__ = "millstream.service"


class Context:
    """The handler's view of the platform while it processes one record."""

    def __init__(self, app: str, service: str, streams: Streams, outputs: tuple[str, ...],
                 stateful: bool) -> None:
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
        self.extras: dict[str, Any] = {}
        #: the shadow version this service runs as (``--shadow``), or None in production
        self.shadow: str | None = None
        self._per_record: list[Any] = []
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

    def emit(self, stream: str | None, value: Any, *, key: bytes | str | None = None) -> None:
        """Send ``value`` to ``stream`` (one of the service's outputs; None when it has one)
        once this record's processing succeeds. ``key`` defaults to the input's key."""
        self.emitted.append(Emit(self._resolve(stream), value, key))

    def _resolve(self, stream: str | None) -> str:
        if stream is None:
            if len(self._outputs) != 1:
                raise InvalidRequestError(
                    f"service {self.service!r} has {len(self._outputs)} outputs; name the "
                    "stream to emit to"
                )
            return self._outputs[0]
        return stream

    def emit_now(self, stream: str | None, value: Any, *,
                 key: bytes | str | None = None) -> None:
        """Send ``value`` to ``stream`` (one of the service's outputs) at once, not when the
        record's processing succeeds: for progress and heartbeats while a long record is
        handled. A retried attempt sends again, and the record is sent even if the attempt
        then fails. A shadow's goes to its shadow stream, like every output."""
        if self._emit_now is None:
            raise InvalidRequestError("emit_now works only while the service runs")
        self._emit_now(self._resolve(stream), value, key)

    def report(self, error: BaseException | str) -> None:
        """Record the input in the exceptions stream with ``error`` as the reason, without
        failing it: it is not retried, what the handler emits or returns still goes out and
        processing goes on. For inputs a service handles by design but someone should look
        at (say, an upload that is not a video). Like ``emit``, it takes effect only if this
        attempt succeeds. A string becomes a ``ReportedFailure``."""
        self.reported.append(ReportedFailure(error) if isinstance(error, str) else error)

    def output_stream(self, name: str) -> str:
        """The stream the service's output ``name`` is written to: ``name`` in production,
        ``<name>.shadow.<version>`` when the service runs as a shadow. For records a handler
        sends itself (with a producer of its own) rather than by ``emit``; the runner creates
        that stream before the first record."""
        if name not in self._outputs:
            raise InvalidRequestError(
                f"service {self.service!r} has no output {name!r}; its outputs: "
                f"{', '.join(self._outputs) or 'none'}"
            )
        return name if self.shadow is None else shadow_stream(name, self.shadow)

    def __getattr__(self, name: str) -> Any:
        # stores added by other parts of the platform (files, tables) live in ``extras``
        try:
            return self.__dict__["extras"][name]
        except KeyError:
            raise AttributeError(
                f"the service context has no {name!r}; it offers record, key, emit, state, "
                f"streams, log{''.join(', ' + k for k in self.__dict__.get('extras', {}))}"
            ) from None

    def _begin(self, record: Record, state: Shard | None, attempt: int) -> None:
        self._record = record
        self._state = state
        self.attempt = attempt
        self.emitted = []
        if self.reported:
            self.reported = []
        for extra in self._per_record:
            extra._begin(record)

    def add_store(self, name: str, store: Any) -> None:
        """Offer ``store`` to handlers as ``ctx.<name>``; if it has ``_begin(record)`` it is
        told each record processed (to name what it writes after the record)."""
        self.extras[name] = store
        if hasattr(store, "_begin"):
            self._per_record.append(store)
