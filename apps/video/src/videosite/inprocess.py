"""The whole site in one process: every service in a thread, and the web server.

``InProcessSite`` is what ``millstream-video demo`` and ``millstream-video serve`` run, and
what the end-to-end tests run on each platform. Streams, files and tables come from the
platform configuration (``MILLSTREAM_STREAMS`` / ``_FILES`` / ``_TABLES`` or
``millstream.toml``), so the same code runs on the embedded default and on Kafka + S3 +
PostgreSQL. In production, run the services as supervised processes instead
(``millstream up videosite.app:app``) and the web server on its own
(``millstream-video web``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import millstream
from millstream.files import FileStore, open_files
from millstream.runtime import ServiceRunner, ServiceThreads, Statistics, ensure_app_streams
from millstream.tables import Tables, open_tables

from ._allocator import tune_allocator
from .app import app
from .client import upload
from .models import Video

if TYPE_CHECKING:
    from .web.server import ServerLimits

__all__ = ["FINISHED", "InProcessSite", "free_port"]

#: the statuses a video does not leave
FINISHED = ("ready", "failed")
#: how long ``stop`` waits for each service to finish the record in hand
STOP_WAIT_S = 300.0


def free_port(preferred: int = 8000) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


class InProcessSite:
    """Every service of ``videosite.app`` in a thread with its own consumer group, and —
    with ``serve`` — the web server on ``127.0.0.1:port`` (0: 8000 if free, else any).
    ``instances`` runs that many instances of a service (one group), e.g. ``{"transcode": 2}``.
    ``limits`` are the server's (default: ``ServerLimits.from_env()``); ``console_url`` is
    where the ops page links to the console (default: ``VIDEOSITE_CONSOLE_URL``). Metrics go
    out every ``metrics_interval_s`` (5 s, as ``millstream run``: each record is work for
    analytics, idle or not).

    Use as a context manager, or ``start()`` then ``stop()``. A service that dies is
    reported in ``errors``; the others keep running."""

    def __init__(self, *, token: str, serve: bool = True, port: int = 0,
                 metrics_interval_s: float = 5.0, poll_timeout_s: float = 0.1,
                 services: Iterable[str] | None = None,
                 instances: Mapping[str, int] | None = None,
                 limits: ServerLimits | None = None, console_url: str | None = None) -> None:
        self.token = token
        self._console_url = console_url
        self.config = millstream.load_config()
        self.files: FileStore = open_files()
        self.tables: Tables = open_tables()
        self._stop_errors: list[str] = []
        self.url: str | None = None
        self._serve = serve
        self._port = port
        self._limits = limits
        self._server: Any = None
        self._web_thread: threading.Thread | None = None
        try:
            self._services = ServiceThreads(
                app, lambda: millstream.open_streams(self.config.streams), services,
                instances=instances or {}, files=self.files, tables=self.tables,
                metrics_interval_s=metrics_interval_s, poll_timeout_s=poll_timeout_s)
        except BaseException:
            self.files.close()
            self.tables.close()
            raise

    # -- running -------------------------------------------------------------------------------

    def start(self) -> InProcessSite:
        """Set the process's allocator (``tune_allocator``), create the app's streams, start
        the services, then the web server. If any of it fails, what started is stopped
        again before the error goes on."""
        tune_allocator()
        try:
            with millstream.open_streams(self.config.streams) as streams:
                ensure_app_streams(app, streams)  # all of them: uploads are accepted at once
            self._services.start()
            if self._serve:
                self._start_web()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_web(self) -> None:
        from .web import create_app
        from .web.server import build_server

        port = self._port or free_port()
        web = create_app(self.config.streams, files=self.files, tables=self.tables,
                         token=self.token, console_url=self._console_url)
        self._server = build_server(web, host="127.0.0.1", port=port, limits=self._limits,
                                    log_level="warning")
        self._web_thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._web_thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._web_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop the web server, then every service (each finishes, commits and checkpoints),
        then close the file store and tables."""
        if self._server is not None:
            self._server.should_exit = True
            if self._web_thread is not None:
                self._web_thread.join(30)
            self._server = None
        busy = self._services.stop(STOP_WAIT_S)
        if busy:  # a service still holds a record: leave the stores to it (daemon threads)
            self._stop_errors.append(f"still running after {STOP_WAIT_S:.0f} s: {', '.join(busy)}")
            return
        self.files.close()
        self.tables.close()

    def __enter__(self) -> InProcessSite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- using it ------------------------------------------------------------------------------

    def upload(self, path: str | Path, title: str) -> str:
        """Upload a file through the site's HTTP API; its video id (``UploadRefused`` when
        the site refuses it)."""
        if self.url is None:
            raise RuntimeError("the web server is not running (serve=False)")
        return upload(self.url, self.token, path, title)

    def video(self, video_id: str) -> Video | None:
        """The video as the catalog has it now, or None before the catalog has it."""
        try:
            return self.tables.table("videos").get(video_id, Video)
        except millstream.MillstreamError:
            return None

    def wait(self, video_ids: Iterable[str], timeout: float = 300.0,
             on_change: Callable[[Video], None] | None = None,
             interval: float = 0.1) -> dict[str, Video]:
        """Wait until every video is ready or failed, or ``timeout`` seconds passed; the
        finished ones. ``on_change`` sees each new state of a video as the catalog shows it."""
        waiting = set(video_ids)
        seen: dict[str, Video] = {}
        finished: dict[str, Video] = {}
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for video_id in sorted(waiting):
                video = self.video(video_id)
                if video is None or seen.get(video_id) == video:
                    continue
                seen[video_id] = video
                if on_change is not None:
                    on_change(video)
                if video.status in FINISHED:
                    finished[video_id] = video
                    waiting.discard(video_id)
            if waiting:
                time.sleep(interval)
        return finished

    @property
    def errors(self) -> list[str]:
        """What went wrong: each service instance that died (``service#instance: error``),
        and services still running when ``stop`` gave up on them. The others keep
        running after one dies."""
        return [str(failure) for failure in self._services.errors] + self._stop_errors

    @property
    def runners(self) -> list[ServiceRunner]:
        """The services' runners, one per instance."""
        return list(self._services.runners)

    def statistics(self) -> dict[str, Statistics]:
        """Each service's live counters and timings, its instances added up."""
        return {name: self._services.statistics(name) for name in self._services.services}
