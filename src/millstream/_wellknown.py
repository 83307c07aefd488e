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

from millstream.streams._base import Admin, Retention

__all__ = [
    "CHECKPOINTS",
    "DEPLOYMENTS",
    "EXCEPTIONS",
    "METRICS",
    "REPLAY_HEADER",
    "SHADOW_INFIX",
    "WRITER_HEADER",
    "ensure_platform_streams",
    "retry_stream",
    "shadow_stream",
]

METRICS = "millstream.metrics"
EXCEPTIONS = "millstream.exceptions"
CHECKPOINTS = "millstream.checkpoints"
DEPLOYMENTS = "millstream.deployments"
RETRY_PREFIX = "millstream.retry."
SHADOW_INFIX = ".shadow."

#: Header on a replayed record: the offset of the exception record it re-submits.
REPLAY_HEADER = "millstream-replay-of"
#: Header naming the service that wrote a record, on streams several services of an app write.
WRITER_HEADER = "millstream-writer"

_METRICS_RETENTION = Retention(max_age_ms=7 * 24 * 3600 * 1000)
_CHECKPOINT_RETENTION = Retention(compact=True)


def retry_stream(group: str) -> str:
    """The stream a service's own group reads replayed records from."""
    return RETRY_PREFIX + "".join(c if c.isalnum() or c in "._-" else "_" for c in group)


def shadow_stream(stream: str, version: str) -> str:
    """Where a shadow version ``version`` writes what production writes to ``stream``."""
    return f"{stream}{SHADOW_INFIX}{version}"


def ensure_platform_streams(admin: Admin) -> None:
    """Create the well-known streams unless they exist (one partition each)."""
    admin.ensure_stream(METRICS, 1, _METRICS_RETENTION)
    admin.ensure_stream(EXCEPTIONS, 1)
    admin.ensure_stream(CHECKPOINTS, 1, _CHECKPOINT_RETENTION)
