"""What a file store knows of an object: the names it accepts, and the record of its write.

A name is a relative ``/``-separated path (``videos/ab12/source.mp4``); ``.meta`` and
``.tmp`` at its start are the stores' own. ``ObjectMeta`` is what a store recorded when the
object was written.
"""

from __future__ import annotations

from dataclasses import dataclass

from millstream.errors import InvalidRequestError

__all__ = ["CHUNK", "RESERVED", "ObjectMeta", "check_name", "check_prefix"]

#: Bytes moved per read or write when streaming.
CHUNK = 1024 * 1024
#: First path parts a store keeps for itself (metadata sidecars, in-flight writes).
RESERVED = frozenset({".meta", ".tmp"})


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a store recorded about one object when it was written."""

    size: int
    sha256: str
    content_type: str | None
    modified: float  # seconds since the epoch, as the backend reports it


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid object name, else raise ``InvalidRequestError``."""
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"object name {name!r} must be a non-empty string")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise InvalidRequestError(
            f"object name {name!r} must be a relative '/'-separated path without '..', '.', "
            "empty parts, backslashes or a leading '/' (e.g. 'videos/ab12/source.mp4')"
        )
    if parts[0] in RESERVED:
        raise InvalidRequestError(f"object name {name!r}: {parts[0]!r} is reserved by the store")
    if any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"object name {name!r} contains control characters")
    return name


def check_prefix(prefix: str) -> str:
    """A listing prefix: any start of a valid name (may end with ``/``), or empty."""
    if prefix:
        check_name(prefix.rstrip("/") or "x/")
    return prefix
