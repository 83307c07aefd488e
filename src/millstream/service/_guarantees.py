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
    of ``app`` writes, where either of the two is among ``services`` (with the app's own)."""
    given = list(services)
    every = {**app.services, **{s.name: s for s in given}}
    names = {s.name for s in given}
    for reader in every.values():
        if not (reader.stateful and reader.exactly_once):
            continue
        for writer in every.values():
            if writer.exactly_once or not names & {reader.name, writer.name}:
                continue
            shared = [s for s in reader.inputs if s in writer.outputs]
            if shared:
                raise InvalidRequestError(_refusal(app, reader, writer, shared[0]))


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


def _refusal(app: App, reader: ServiceSpec, writer: ServiceSpec, stream: str) -> str:
    if app.processing == EXACTLY_ONCE:  # the writer was declared exactly_once=False
        change = (f"remove exactly_once=False from service {writer.name!r}, so it runs "
                  "exactly-once as the app does")
    else:
        change = (f"declare the app exactly-once — App({app.name!r}, "
                  f"processing='exactly-once') — so every service commits in transactions, "
                  f"or at least declare {writer.name!r} with exactly_once=True")
    return (
        f"stateful exactly-once service {reader.name!r} reads stream {stream!r}, which "
        f"at-least-once service {writer.name!r} writes: after a crash {writer.name!r} "
        f"writes some records twice, and {reader.name!r} would take each copy into its "
        f"state. To fix it, {change}.")
