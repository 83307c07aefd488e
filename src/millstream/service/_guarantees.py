"""An app's processing guarantee, and the one mix of guarantees that is refused.

An app has one processing guarantee for all its services (``App(..., processing=...)``):

* ``"at-least-once"`` (the default): a crash never loses a record, but the records handled
  since the last commit are handled again, so a service's outputs may hold some twice;
* ``"exactly-once"``: each service writes its outputs, exception records, state checkpoints
  and input offsets in one transaction, so every input's effects appear exactly once.

A service may say otherwise (``exactly_once=True`` or ``False``) only where that stays
safe. What is refused: a **stateful exactly-once** service reading a stream that an
**at-least-once** service of the same app writes. After a crash of the writer, the records
it wrote twice reach the reader as two records, and the reader's state (a total, a count)
takes both in, exactly once each — exactly wrong. It is refused when the second of the two
services is declared, and again when a service of the app starts; where the writer is not
a service of the app (a script, the web edge, another app) it cannot be checked, and the
start logs a warning instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from millstream.errors import InvalidRequestError

if TYPE_CHECKING:
    from millstream.service._app import App, ServiceSpec

__all__ = ["EXACTLY_ONCE", "PROCESSING", "Processing", "check_at_start", "check_guarantees",
           "check_processing"]

log = logging.getLogger(__name__)

Processing = Literal["at-least-once", "exactly-once"]
PROCESSING: tuple[Processing, ...] = ("at-least-once", "exactly-once")
EXACTLY_ONCE: Processing = "exactly-once"


def check_processing(value: object) -> Processing:
    """``value`` if it names a processing guarantee, else a clear error."""
    for known in PROCESSING:
        if value == known:
            return known
    raise InvalidRequestError(
        f"processing={value!r} is not a processing guarantee; use 'at-least-once' (the "
        "default) or 'exactly-once'")


def check_guarantees(app: App, services: Iterable[ServiceSpec]) -> None:
    """Refuse a stateful exactly-once service that reads a stream an at-least-once service
    of ``app`` writes — directly, or through exactly-once services that pass its records on
    (each copy of a record becomes one output) — where one of the services involved is
    among ``services`` (with the app's own)."""
    given = list(services)
    every = {**app.services, **{s.name: s for s in given}}
    names = {s.name for s in given}
    for reader in every.values():
        if not (reader.stateful and reader.exactly_once):
            continue
        for stream in reader.inputs:
            chain = _duplicates_in(every, stream)
            if chain is not None and names & {reader.name, *(s.name for _, s in chain)}:
                raise InvalidRequestError(_refusal(app, reader, chain))


def _duplicates_in(every: dict[str, ServiceSpec], stream: str
                   ) -> list[tuple[str, ServiceSpec]] | None:
    """How ``stream`` may hold a record twice: the (stream, writer) steps back from it to
    an at-least-once writer, the first step being ``stream`` and the service writing it;
    None if no at-least-once service's records reach it."""
    paths: dict[str, list[tuple[str, ServiceSpec]]] = {}
    for writer in every.values():  # streams at-least-once services write
        if not writer.exactly_once:
            for out in writer.outputs:
                paths.setdefault(out, [(out, writer)])
    todo = list(paths)
    while todo:  # and the outputs of exactly-once services reading them, passed on
        name = todo.pop(0)
        for relay in every.values():
            if name in relay.inputs and relay.exactly_once:
                for out in relay.outputs:
                    if out not in paths:
                        paths[out] = [(out, relay), *paths[name]]
                        todo.append(out)
    return paths.get(stream)


def check_at_start(app: App, spec: ServiceSpec) -> None:
    """When ``spec``'s service starts: refuse the mix (the app may have been changed since
    it was declared), and warn where it cannot be checked — a stateful exactly-once service
    reading a stream no service of the app writes."""
    check_guarantees(app, [spec])
    if spec.stateful and spec.exactly_once:
        for name in spec.inputs:
            if not app.writers_of(name):
                log.warning(
                    "stateful exactly-once service %s reads stream %s, which no service of "
                    "app %s writes: millstream cannot check that its writer never sends a "
                    "record twice (a retried send, a script run again), and a record sent "
                    "twice is taken into the state twice", spec.name, name, app.name)


def _refusal(app: App, reader: ServiceSpec, chain: list[tuple[str, ServiceSpec]]) -> str:
    stream = chain[0][0]
    origin, writer = chain[-1]
    if app.processing == EXACTLY_ONCE:  # the writer was declared exactly_once=False
        change = (f"remove exactly_once=False from service {writer.name!r}, so it runs "
                  "exactly-once as the app does")
    else:
        change = (f"declare the app exactly-once — App({app.name!r}, "
                  f"processing='exactly-once') — so every service commits in transactions, "
                  f"or at least declare {writer.name!r} with exactly_once=True")
    if len(chain) == 1:
        return (
            f"stateful exactly-once service {reader.name!r} reads stream {stream!r}, which "
            f"at-least-once service {writer.name!r} writes: after a crash {writer.name!r} "
            f"writes some records twice, and {reader.name!r} would take each copy into its "
            f"state. To fix it, {change}.")
    relays = "".join(f"service {relay.name!r} writes from stream {source!r}, which "
                     for (_, relay), (source, _) in pairwise(chain))
    return (
        f"stateful exactly-once service {reader.name!r} reads stream {stream!r}, which "
        f"{relays}at-least-once service {writer.name!r} writes: after a crash "
        f"{writer.name!r} writes some records to {origin!r} twice, each copy is passed on "
        f"to {stream!r}, and {reader.name!r} would take each copy into its state. To fix "
        f"it, {change}.")
