"""The server's limits on clients (``ServerLimits``) and the ``VIDEOSITE_*`` variable that
sets each (``ENV``); ``server``'s docstring says what each limit does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .settings import from_env

__all__ = ["ENV", "ServerLimits"]

#: field -> environment variable
ENV = {
    "max_connections": "VIDEOSITE_MAX_CONNECTIONS",
    "header_timeout_s": "VIDEOSITE_HEADER_TIMEOUT_S",
    "min_body_rate": "VIDEOSITE_MIN_BODY_RATE",
    "body_rate_window_s": "VIDEOSITE_BODY_RATE_WINDOW_S",
    "send_timeout_s": "VIDEOSITE_SEND_TIMEOUT_S",
    "keep_alive_s": "VIDEOSITE_KEEP_ALIVE_S",
    "linger_s": "VIDEOSITE_LINGER_S",
    "linger_bytes": "VIDEOSITE_LINGER_BYTES",
}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How much a client may hold of the server, and for how long."""

    max_connections: int = 512
    header_timeout_s: float = 10.0
    min_body_rate: int = 1024
    body_rate_window_s: float = 20.0
    send_timeout_s: float = 60.0
    keep_alive_s: int = 5
    linger_s: float = 2.0
    linger_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"{ENV[f.name]} (ServerLimits.{f.name}) must be above 0, "
                                 f"not {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any
                 ) -> ServerLimits:
        """The defaults, each overridden by its ``VIDEOSITE_*`` variable, then by
        ``overrides`` (keyword arguments that are not None)."""
        return from_env(cls, ENV, environ, overrides)
