"""The one place the video site's HTTP server is built: ``build_server`` and its limits.

``millstream-video web``, ``millstream-video serve`` (``InProcessSite``) and the tests all
run the site through ``build_server``, so every one of them gets the same protection
against slow and abusive clients (``_protocol`` enforces it). ``ServerLimits.from_env``
reads the limits from ``VIDEOSITE_*`` variables; the CLI's flags override them:

* ``VIDEOSITE_MAX_CONNECTIONS`` (``--max-connections``, 512): open connections; one more
  is answered 503 and closed.
* ``VIDEOSITE_HEADER_TIMEOUT_S`` (``--header-timeout``, 10): longest wait for a request's
  line and headers, from the connection's opening or the next request's first byte.
* ``VIDEOSITE_MIN_BODY_RATE`` (``--min-body-rate``, 1024 bytes/s) averaged over
  ``VIDEOSITE_BODY_RATE_WINDOW_S`` (``--body-rate-window``, 20): a slower request body is
  answered 408 and closed.
* ``VIDEOSITE_SEND_TIMEOUT_S`` (``--send-timeout``, 60): longest a response may wait on a
  client that does not read it (the server's send buffer full); then the connection is cut.
* ``VIDEOSITE_KEEP_ALIVE_S`` (``--keep-alive``, 5): an idle connection's life between
  requests.
* ``VIDEOSITE_LINGER_S`` (``--linger``, 2) and ``VIDEOSITE_LINGER_BYTES``
  (``--linger-bytes``, 1 MiB): after a response that did not wait for the whole request,
  how long and how much unread input is drained before the socket is closed.
"""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from ._edge import HEADERS
from ._limits import ENV, ServerLimits
from ._protocol import guarded_protocol

__all__ = ["ENV", "ServerLimits", "build_server"]


def build_server(app: ASGIApp, *, host: str, port: int, limits: ServerLimits | None = None,
                 log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``host:port``, speaking HTTP/1.1 through the guarded
    h11 protocol (always that one: the ``auto`` choice would switch to httptools when it is
    installed, without these limits). ``limits`` default to ``ServerLimits.from_env()``."""
    limits = limits if limits is not None else ServerLimits.from_env()
    security = [(name.encode(), value.encode()) for name, value in HEADERS.items()]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            http=guarded_protocol(limits, security), ws="none",
                            timeout_keep_alive=limits.keep_alive_s, limit_concurrency=None)
    return uvicorn.Server(config)
