"""Delivery modes: one object per mode owns the order of sending outputs, making them durable,
checkpointing state and committing input offsets (see ``Delivery``). ``delivery_for`` (the
mode) and ``state_for`` (the state, if any) are the only places that read a service's
delivery flags (``exactly_once``, ``stateful``)."""

from __future__ import annotations

from collections.abc import Callable

from millstream.errors import InvalidRequestError
from millstream.files._base import FileStore
from millstream.files._pins import Pins
from millstream.runtime._delivery._at_least_once import AtLeastOnce
from millstream.runtime._delivery._base import CommitListener, Delivery, Wiring
from millstream.runtime._delivery._checkpointed import Checkpointed
from millstream.runtime._delivery._transactional import Transactional
from millstream.runtime._state import CheckpointStore, ServiceState
from millstream.service._app import ServiceSpec
from millstream.streams._base import Streams, SupportsTransactions

__all__ = ["AtLeastOnce", "Checkpointed", "CommitListener", "Delivery", "Transactional",
           "Wiring", "delivery_for",
           "state_for"]


def delivery_for(spec: ServiceSpec, streams: Streams, wiring: Wiring, *,
                 state: ServiceState | None, retry_stream: str, transactional_id: str,
                 partitions: Callable[[str], int]) -> Delivery:
    """The delivery mode ``spec`` declares: transactional if exactly-once, else checkpointed
    if stateful, else at-least-once. Exactly-once on a backend without transactions is
    refused here, before anything runs."""
    if spec.exactly_once:
        if not isinstance(streams, SupportsTransactions):
            raise InvalidRequestError(
                f"service {spec.name!r} asks for exactly-once processing, but the streams "
                f"backend {streams.url} has no transactions; run it at-least-once or on a "
                "backend that supports them"
            )
        return Transactional(wiring, streams, transactional_id, state, partitions)
    if state is not None:
        return Checkpointed(wiring, state, retry_stream,
                            checkpoint_interval_s=spec.checkpoint_interval,
                            checkpoint_records=spec.checkpoint_records)
    return AtLeastOnce(wiring)


def state_for(spec: ServiceSpec, streams: Streams, group: str, *, files: FileStore | None,
              pins: Pins | None, done: dict[tuple[str, int], int]) -> ServiceState | None:
    """The state ``spec`` declares (``stateful``): its shards, checkpointed by ``group`` to
    ``streams`` (large states to ``files``, pinned by ``pins`` until durable), sharing the
    runner's progress ``done``; None for a service without state."""
    if not spec.stateful:
        return None
    return ServiceState(CheckpointStore(streams, group, files=files, pins=pins), spec.inputs,
                        done)
