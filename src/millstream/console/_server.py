"""Serving the console: a uvicorn server on ``host:port``, in the foreground (the CLI) or on
a thread of its own (``ServedConsole``: the video site's demo and the tests)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

__all__ = ["ServedConsole", "build_server"]


def build_server(app: ASGIApp, *, host: str, port: int, log_level: str = "warning"
                 ) -> uvicorn.Server:
    """A uvicorn server for the console ``app`` on ``host:port`` (HTTP/1.1 with h11; no
    websockets: the pages fetch JSON)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http="h11",
                            ws="none", lifespan="off", server_header=False)
    return uvicorn.Server(config)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServedConsole:
    """``app`` served on a daemon thread; ``url`` is where. Port 0 picks a free one. Use with
    ``with`` or ``stop()``."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 10.0) -> None:
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = build_server(app, host=host, port=self.port)
        self._thread = threading.Thread(target=self.server.run, name="console-server",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the console did not start on {self.url}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServedConsole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
