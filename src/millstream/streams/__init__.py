"""Streams: open a backend by URL, or check that it works.

``local:`` (the default) is the embedded log; other schemes name other backends, imported
lazily so their client libraries are only needed when used. ``_BACKENDS`` is the one table
from scheme to backend: ``open_streams`` and ``check_streams`` (``millstream doctor``) both
go through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from millstream._backend import Backend
from millstream.config import load_config
from millstream.errors import ConfigError
from millstream.streams._base import Streams

__all__ = ["SCHEMES", "check_streams", "open_streams"]


def _open_local(url: str, home: Path, options: Mapping[str, Any] | None) -> Streams:
    from millstream.streams._local import LocalStreams

    return LocalStreams(url, home)


def _check_local(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.streams._local import check

    return check(url, home)


def _open_kafka(url: str, home: Path, options: Mapping[str, Any] | None) -> Streams:
    from millstream.streams._kafka import KafkaStreams

    return KafkaStreams(url, options)


def _check_kafka(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.streams._kafka import check

    return check(url, options)


_BACKENDS: dict[str, Backend[Streams]] = {
    "local": Backend(_open_local, _check_local),
    "kafka": Backend(_open_kafka, _check_kafka),
}
SCHEMES = tuple(_BACKENDS)


def _backend(target: str) -> Backend[Streams]:
    scheme = target.split(":", 1)[0] if ":" in target else ""
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError(
            f"streams URL {target!r} has scheme {scheme or '(none)'!r}; supported: "
            + ", ".join(f"{s}:" for s in SCHEMES)
            + " (for example local: or local:/path/to/dir)"
        )
    return backend


def open_streams(url: str | None = None, *, options: Mapping[str, str] | None = None) -> Streams:
    """Open the streams backend named by ``url`` (default: the configured one).

    ``options`` are client properties for backends that take them (Kafka), merged over the
    URL's query.
    """
    config = load_config(streams=url)
    return _backend(config.streams).open(config.streams, config.home, options)


def check_streams(url: str | None = None, *, options: Mapping[str, str] | None = None) -> str:
    """Open the streams backend as ``open_streams`` does and list its streams; return what
    was found. Raises the millstream error the application would get, naming the fix."""
    config = load_config(streams=url)
    return _backend(config.streams).check(config.streams, config.home, options)
