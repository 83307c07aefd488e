"""Calling an operator's hooks for a running service: ``flush`` before a shard's checkpoint
(or the transaction that commits its offsets), ``advance`` about once a second per owned
shard, and the ``ShardOutput`` through which what they emit joins the service's outputs.

A hook's outputs are rows like a record's (``runtime._outputs``), their source a stand-in
record naming the shard (stream: the service's first input, partition: the shard number,
offset -1), so a refused row is reported against the shard it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from millstream._wellknown import WRITER_HEADER
from millstream.records import Headers, Record
from millstream.runtime._clock import Clock
from millstream.runtime._outputs import Encoder, Outputs
from millstream.runtime._state import ServiceState
from millstream.service._app import App, Emit, ServiceSpec
from millstream.service._operator import Operator

#: ``report(source, error)``: an error a hook reports, to the exceptions stream
Report = Callable[[Record, BaseException], None]

__all__ = ["ADVANCE_INTERVAL_S", "OperatorHooks", "operator_of"]

#: how often (clock seconds) ``advance`` runs for every owned shard
ADVANCE_INTERVAL_S = 1.0


def operator_of(spec: ServiceSpec) -> Operator | None:
    """The service's handler if it is an operator (it has ``flush`` and ``advance``); its
    hooks run only for a service with state (the runner checks)."""
    handler = spec.handler
    return handler if isinstance(handler, Operator) else None


class _ShardOutput:
    """A hook's ``ShardOutput`` for one shard."""

    __slots__ = ("_encoder", "_headers", "_outputs", "_report", "_source")

    def __init__(self, encoder: Encoder, outputs: Outputs, headers: dict[str, Headers],
                 source: Record, report: Report) -> None:
        self._encoder = encoder
        self._outputs = outputs
        self._headers = headers
        self._source = source
        self._report = report

    def emit(self, stream: str, value: Any, *, key: bytes | str) -> None:
        self._outputs.rows.append(self._encoder.encode(self._source, Emit(stream, value, key)))

    def emit_encoded(self, stream: str, key: bytes, data: bytes | None) -> None:
        self._outputs.rows.append((self._encoder.streams[stream], key, data,
                                   self._headers[stream], self._source))

    def report(self, error: BaseException) -> None:
        self._report(self._source, error)


class OperatorHooks:
    """Runs ``operator``'s hooks over ``state``'s shards, appending what they emit to
    ``outputs`` (the delivery mode sends them with the rest)."""

    def __init__(self, app: App, spec: ServiceSpec, operator: Operator, state: ServiceState,
                 encoder: Encoder, outputs: Outputs, clock: Clock, report: Report) -> None:
        self._operator = operator
        self._report = report
        self._state = state
        self._encoder = encoder
        self._outputs = outputs
        self._clock = clock
        self._input = spec.inputs[0]
        self._headers: dict[str, Headers] = {}
        for stream in spec.outputs:
            headers: Headers = getattr(app.streams[stream].codec, "headers", ())
            if len(app.writers_of(stream)) > 1:
                headers = (*headers, (WRITER_HEADER, spec.name.encode()))
            self._headers[stream] = headers
        self._next_advance = 0.0
        #: the wall-clock time of the last ``advance`` round (None before the first)
        self.advanced_to: float | None = None

    def _out(self, number: int) -> _ShardOutput:
        source = Record(self._input, number, -1, 0, None, None)
        return _ShardOutput(self._encoder, self._outputs, self._headers, source, self._report)

    def flush(self, numbers: Iterable[int] | None = None) -> None:
        """Call ``flush`` for the shards ``numbers`` (every owned one if None)."""
        shards = self._state.shards
        for number in sorted(shards) if numbers is None else sorted(numbers):
            shard = shards.get(number)
            if shard is not None:
                self._operator.flush(number, shard, self._out(number))

    def maybe_advance(self, monotonic: float) -> bool:
        """Call ``advance`` for every owned shard if a second has passed since the last
        time; True if it did."""
        if monotonic < self._next_advance:
            return False
        self._next_advance = monotonic + ADVANCE_INTERVAL_S
        now = self._clock.time()
        for number, shard in sorted(self._state.shards.items()):
            self._operator.advance(number, shard, now, self._out(number))
        self.advanced_to = now
        return True
