"""Streams: open a backend by URL.

``local:`` (the default) is the embedded log; other schemes name other backends, imported
lazily so their client libraries are only needed when used.
"""

from __future__ import annotations

from collections.abc import Mapping

from millstream.config import load_config
from millstream.errors import ConfigError
from millstream.streams.base import Streams

__all__ = ["SCHEMES", "open_streams"]

SCHEMES = ("local", "kafka")


def open_streams(url: str | None = None, *, options: Mapping[str, str] | None = None) -> Streams:
    """Open the streams backend named by ``url`` (default: the configured one).

    ``options`` are client properties for backends that take them (Kafka), merged over the
    URL's query.
    """
    config = load_config(streams=url)
    target = config.streams
    scheme = target.split(":", 1)[0] if ":" in target else ""
    if scheme == "local":
        from millstream.streams.local import LocalStreams

        return LocalStreams(target, config.home)
    if scheme == "kafka":
        from millstream.streams.kafka import KafkaStreams

        return KafkaStreams(target, options)
    raise ConfigError(
        f"streams URL {target!r} has scheme {scheme or '(none)'!r}; supported: "
        + ", ".join(f"{s}:" for s in SCHEMES)
        + " (for example local: or local:/path/to/dir)"
    )
