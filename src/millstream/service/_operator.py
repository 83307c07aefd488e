"""Operators: handlers millstream writes, with two runtime hooks besides the per-record call.

A windowed or joining service is an ordinary stateful service whose handler is an *operator*:
an object called with ``(value, ctx)`` for each record like any handler, which also has

* ``flush(number, shard, out)`` — called for each shard right before its checkpoint is
  written (at-least-once) or before the transaction holding its offsets commits
  (exactly-once). What it emits through ``out`` is sent before the checkpoint, so it is
  durable no later than the state it was computed from (the window operators emit their
  table rows here, one per changed window).
* ``advance(number, shard, now, out)`` — called for every owned shard about once a second of
  wall-clock time, also when no record comes (``now``: the clock's Unix time in seconds);
  an idle partition's event time moves on here.

The runner recognises an operator by these two methods (``isinstance(handler, Operator)``)
and calls them on its own thread, between records, never during one. A hook that changes the
shard sets ``shard.changed = True`` so the next checkpoint holds the change. Declare a
service that uses one with ``app.service(name, inputs=..., outputs=..., stateful=True)
(operator)``: the operator's ``__call__(value, ctx)`` is its handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from millstream.runtime._state import Shard

__all__ = ["Operator", "ShardOutput"]


class ShardOutput(Protocol):
    """Where a hook's outputs go: into the delivery of the shard's service, like the outputs
    of a record (in the open transaction when exactly-once)."""

    def emit(self, stream: str, value: Any, *, key: bytes | str) -> None:
        """Send ``value`` to the service's output ``stream`` (its declared name), encoded by
        the stream's codec, keyed by ``key``."""
        ...

    def emit_encoded(self, stream: str, key: bytes, data: bytes | None) -> None:
        """Send ``data`` — already the JSON the stream's codec would write, or None for a
        tombstone — to output ``stream`` keyed by ``key``; the codec's headers are added."""
        ...

    def report(self, error: BaseException) -> None:
        """Send ``error`` to the exceptions stream as ``ctx.report`` does (its ``stage``
        attribute, if any, is the record's stage), against the shard: the input named is
        the shard's partition of the service's first input, at offset -1 (no record)."""
        ...


@runtime_checkable
class Operator(Protocol):
    """A handler with the two runtime hooks (see the module docstring). Both run on the
    runner's thread; neither may block for long."""

    def __call__(self, value: Any, ctx: Any) -> Any: ...

    def flush(self, number: int, shard: Shard, out: ShardOutput) -> None:
        """Shard ``number``'s checkpoint (or transaction) comes next: emit what must be
        durable with it."""
        ...

    def advance(self, number: int, shard: Shard, now: float, out: ShardOutput) -> None:
        """About once a second for every owned shard, records or not: ``now`` is wall-clock
        Unix seconds."""
        ...
