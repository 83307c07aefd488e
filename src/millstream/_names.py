"""Validation of stream and group names, with Kafka's rules on every backend."""

from __future__ import annotations

import re

from millstream.errors import InvalidRequestError

__all__ = ["MAX_NAME_LENGTH", "check_group_name", "check_stream_name"]

MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[A-Za-z0-9._-]+")


def check_stream_name(name: object) -> str:
    """Return ``name`` if it is a legal stream name, else raise ``InvalidRequestError``.

    Legal: 1-249 characters of ``[A-Za-z0-9._-]``, not ``.`` or ``..`` (Kafka's topic rules,
    so a stream can move to Kafka unchanged).
    """
    if not isinstance(name, str):
        raise InvalidRequestError(f"stream name must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequestError(
            f"stream name {name!r} has {len(name)} characters; use 1 to {MAX_NAME_LENGTH}"
        )
    if name in (".", ".."):
        raise InvalidRequestError(f"stream name {name!r} is reserved; choose another name")
    if not _LEGAL.fullmatch(name):
        bad = sorted({c for c in name if not _LEGAL.fullmatch(c)})
        raise InvalidRequestError(
            f"stream name {name!r} contains {''.join(bad)!r}; use only letters, digits, "
            "'.', '_' and '-'"
        )
    return name


def check_group_name(name: object) -> str:
    """Return ``name`` if it is a usable consumer group name (non-empty, ≤ 249 characters)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError(f"group name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequestError(
            f"group name {name[:40]!r}… has {len(name)} characters; use at most {MAX_NAME_LENGTH}"
        )
    return name
