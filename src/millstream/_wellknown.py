"""The platform's well-known streams, shared by every service, and their headers.

* ``millstream.metrics`` — one JSON record per service instance every few seconds and at
  shutdown, keyed by ``<group>``;
* ``millstream.exceptions`` — one JSON record per input record a service gave up on;
* ``millstream.checkpoints`` — compacted; the latest state + input offsets per
  ``<group>/<partition>``;
* ``millstream.retry.<group>`` — records replayed to one service only (its own group reads it);
* ``millstream.deployments`` — one record per promotion of a shadow version.
"""

from __future__ import annotations

from millstream.errors import InvalidRequestError
from millstream.streams._base import Admin, Retention, StreamInfo

__all__ = [
    "CHECKPOINTS",
    "DEPLOYMENTS",
    "EXCEPTIONS",
    "METRICS",
    "PLATFORM_STREAMS",
    "REPLAY_HEADER",
    "WRITER_HEADER",
    "ensure_platform_stream",
    "ensure_platform_streams",
    "is_platform_stream",
    "retry_stream",
]

METRICS = "millstream.metrics"
EXCEPTIONS = "millstream.exceptions"
CHECKPOINTS = "millstream.checkpoints"
DEPLOYMENTS = "millstream.deployments"
RETRY_PREFIX = "millstream.retry."

#: Header on a replayed record: the offset of the exception record it re-submits.
REPLAY_HEADER = "millstream-replay-of"
#: Header naming the service that wrote a record, on streams several services of an app write.
WRITER_HEADER = "millstream-writer"

#: Each platform stream's retention; every one of them, and every retry stream, has one
#: partition. ``ensure_platform_streams`` creates the first three for every service;
#: ``millstream.deployments`` is created by the first promotion.
PLATFORM_STREAMS: dict[str, Retention | None] = {
    METRICS: Retention(max_age=7 * 24 * 3600),
    EXCEPTIONS: None,
    CHECKPOINTS: Retention(compact=True),
    DEPLOYMENTS: None,
}


def retry_stream(group: str) -> str:
    """The stream a service's own group reads replayed records from."""
    return RETRY_PREFIX + "".join(c if c.isalnum() or c in "._-" else "_" for c in group)


def is_platform_stream(name: str) -> bool:
    """True for ``PLATFORM_STREAMS`` and retry streams: made with the platform's settings."""
    return name in PLATFORM_STREAMS or name.startswith(RETRY_PREFIX)


def ensure_platform_stream(admin: Admin, name: str) -> StreamInfo:
    """Create platform stream ``name`` (one of ``PLATFORM_STREAMS`` or a retry stream) with
    its settings, unless it exists; its description either way."""
    if not is_platform_stream(name):
        raise InvalidRequestError(
            f"{name!r} is not one of the platform's streams ({', '.join(PLATFORM_STREAMS)}, "
            f"{RETRY_PREFIX}<group>)")
    return admin.ensure_stream(name, 1, PLATFORM_STREAMS.get(name))


def ensure_platform_streams(admin: Admin) -> None:
    """Create the streams every service writes (metrics, exceptions, checkpoints) unless they
    exist."""
    for name in (METRICS, EXCEPTIONS, CHECKPOINTS):
        ensure_platform_stream(admin, name)
