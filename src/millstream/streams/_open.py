"""Open a streams backend by URL, or check that it works (``millstream doctor``), through the
one table of backends (``millstream._backends``)."""

from __future__ import annotations

from collections.abc import Mapping

from millstream._backends import STREAMS
from millstream.config import load_config
from millstream.streams._base import Streams

__all__ = ["check_streams", "open_streams"]


def open_streams(url: str | None = None, *, options: Mapping[str, str] | None = None) -> Streams:
    """Open the streams backend named by ``url`` (default: the configured one).

    ``local:`` (the default) is the embedded log, ``kafka://host:9092`` Kafka. ``options`` are
    client properties for backends that take them (Kafka), merged over the URL's query.
    """
    config = load_config(streams=url)
    return STREAMS.open(config.streams, config.home, options)


def check_streams(url: str | None = None, *, options: Mapping[str, str] | None = None) -> str:
    """Open the streams backend as ``open_streams`` does and list its streams; return what
    was found. Raises the millstream error the application would get, naming the fix."""
    config = load_config(streams=url)
    return STREAMS.check(config.streams, config.home, options)
