"""Creating the streams an app runs on, with the partitions and retention it declares.

``ensure_app_streams`` is the one place that does it: the runtime before a service starts,
the test kit when it opens, and anything else that writes to an app's streams before its
services have run (a web server accepting uploads, a backfill script) call it. It creates,
unless they exist:

* the platform's streams every service writes (``millstream.metrics``,
  ``millstream.exceptions``, ``millstream.checkpoints``), with the platform's settings;
* every stream the app declares (or only those the chosen ``services`` read and write), with
  its declared partitions and retention — for a ``shadow`` version, the services' outputs
  under their shadow names instead (``millstream.service.shadow_stream``);
* each chosen service's retry stream (``millstream.retry.<group>``).

A stream that already exists is left as it is, whatever its settings.
"""

from __future__ import annotations

from collections.abc import Iterable

from millstream._wellknown import (
    CHECKPOINTS,
    EXCEPTIONS,
    METRICS,
    ensure_platform_stream,
    is_platform_stream,
    retry_stream,
)
from millstream.service._app import App
from millstream.service._shadow import shadow_group, shadow_stream
from millstream.streams._base import StreamInfo, Streams

__all__ = ["ensure_app_streams"]


def ensure_app_streams(app: App, streams: Streams, *,
                       services: Iterable[str] | None = None,
                       shadow: str | None = None) -> dict[str, StreamInfo]:
    """Create the streams ``app`` runs on unless they exist (see the module docstring); each
    one's description, by name, in the order they were made.

    ``services``: only the streams these services read and write, and their retry streams
    (default: every service, and every stream the app declares). ``shadow``: a shadow
    version's streams (its outputs and retry streams) instead of production's."""
    admin = streams.admin()
    chosen = [app.get(name) for name in services] if services is not None \
        else list(app.services.values())
    if services is None and shadow is None:
        names = list(app.streams)
    else:
        wanted = {s for spec in chosen for s in spec.inputs}
        if shadow is None:
            wanted |= {s for spec in chosen for s in spec.outputs}
        names = [name for name in app.streams if name in wanted]
    made: dict[str, StreamInfo] = {}
    for name in (METRICS, EXCEPTIONS, CHECKPOINTS):
        made[name] = ensure_platform_stream(admin, name)
    for name in names:
        if is_platform_stream(name):  # declared as an input: made with the platform's settings
            made[name] = ensure_platform_stream(admin, name)
            continue
        declared = app.streams[name]
        made[name] = admin.ensure_stream(name, declared.partitions, declared.retention)
    for spec in chosen:
        if shadow is not None:
            for name in spec.outputs:
                declared = app.streams[name]
                actual = shadow_stream(name, shadow)
                made[actual] = admin.ensure_stream(actual, declared.partitions,
                                                   declared.retention)
        group = spec.group if shadow is None else shadow_group(spec.group, shadow)
        made[retry_stream(group)] = ensure_platform_stream(admin, retry_stream(group))
    return made
