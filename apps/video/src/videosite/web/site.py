"""What the web server reads and writes: the platform's streams, files and tables, in one
object the routes share (``request.app.state.site``).

Reads that touch streams (the latest progress per stage, the services' metrics, the latest
exceptions) catch up incrementally from consumers this object keeps; every blocking call is
meant to run on a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from millstream import (
    ClosedError,
    Consumer,
    DeliveryError,
    MillstreamError,
    NotFoundError,
    Position,
    Streams,
    UnknownStreamError,
)
from millstream.files import FileRef, FileStore
from millstream.observe import MetricsView, Snapshot
from millstream.runtime import (
    EXCEPTIONS_STREAM,
    ExceptionRecord,
    ensure_app_streams,
    parse_exception,
)
from millstream.service import AsyncWriter
from millstream.tables import Tables
from videosite.app import app, status
from videosite.models import Progress, Video
from videosite.trending import (
    HourCount,
    Trending,
    current_rows,
    per_hour,
    ranked,
    window_rows,
)

from ._throttle import Throttle
from .settings import WebSettings

log = logging.getLogger(__name__)

__all__ = ["MEDIA_TYPES", "Site", "media_files"]

VIDEOS_TABLE = "videos"
STATUS = status.name
#: content types the site serves inline; anything else goes out as an octet-stream download
MEDIA_TYPES = {"video/mp4", "image/jpeg", "application/vnd.apple.mpegurl"}
#: how many exceptions the ops page keeps
LATEST_EXCEPTIONS = 20


def media_files(video: Video) -> dict[str, FileRef]:
    """The objects a video page may fetch, by the name they have under ``/media/<id>/``.

    Renditions and playlists keep their own names (the HLS playlists name each other
    relatively); the poster is ``poster.jpg`` and the stills ``thumb-<n>.jpg``. The
    original upload is not among them."""
    found: dict[str, FileRef] = {}
    for rendition in video.renditions:
        found[f"{rendition.name}.mp4"] = rendition.ref
        found[f"{rendition.name}.m3u8"] = rendition.playlist
    if video.hls_master is not None:
        found["master.m3u8"] = video.hls_master
    if video.poster is not None:
        found["poster.jpg"] = video.poster
    for n, thumb in enumerate(video.thumbnails):
        found[f"thumb-{n}.jpg"] = thumb
    return found


class _Tail:
    """A group-less consumer of one stream, read from the beginning as far as it reaches."""

    def __init__(self, streams: Streams, stream: str) -> None:
        self.streams = streams
        self.stream = stream
        self.lock = threading.Lock()
        self._consumer: Consumer | None = None

    def read(self) -> list[Any]:
        """The records that arrived since the last call (the stream's start the first time);
        nothing if the stream does not exist yet."""
        with self.lock:
            if self._consumer is None:
                if self.stream not in self.streams.admin().list_streams():
                    return []
                consumer = self.streams.open_consumer(None)
                try:
                    consumer.subscribe([self.stream],
                                       on_assign=lambda sps: consumer.seek_to_beginning(sps))
                except BaseException:
                    consumer.close()
                    raise
                self._consumer = consumer
            found: list[Any] = []
            wait = 0.0
            for _ in range(1000):
                records = self._consumer.poll(max_records=1000, timeout=wait)
                found.extend(records)
                wait = 0.0
                if not records:
                    if sum(self._consumer.lag().values()) == 0:
                        break
                    wait = 0.1  # records to read, not fetched yet: wait for them, not spin
            return found

    def close(self) -> None:
        with self.lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


@dataclass(frozen=True, slots=True)
class OpsView:
    """What the ops page shows."""

    metrics: Snapshot | None
    exceptions: list[ExceptionRecord]


class Site:
    """The platform as the web server uses it. ``close()`` closes what it opened itself.
    ``clock`` (seconds since the epoch) stamps view events and says which view window is
    current."""

    def __init__(self, streams: Streams, files: FileStore, tables: Tables,
                 settings: WebSettings, *, owned: tuple[Any, ...] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.streams = streams
        self.clock = clock
        self.files = files
        self.tables = tables
        self.settings = settings
        self._owned = owned
        ensure_app_streams(app, streams)  # uploads are accepted before any service ran
        self.writer = AsyncWriter(streams, app)
        self._status = _Tail(streams, STATUS)
        self._progress: dict[str, dict[str, Progress]] = {}
        self._progress_lock = threading.Lock()
        self._exceptions_tail = _Tail(streams, EXCEPTIONS_STREAM)
        self._exceptions: list[ExceptionRecord] = []
        self._metrics: MetricsView | None = None
        self._metrics_lock = threading.Lock()
        #: view events per client address (POST /api/views)
        self.view_throttle = Throttle(settings.view_rate, settings.view_burst, clock=clock)

    # -- the catalog ---------------------------------------------------------------------------

    def video(self, video_id: str) -> Video | None:
        try:
            return self.tables.table(VIDEOS_TABLE).get(video_id, Video)
        except NotFoundError:  # no video catalogued yet
            return None

    def videos(self, limit: int = 200) -> list[Video]:
        """The newest ``limit`` videos of the catalog, newest first."""
        try:
            rows = self.tables.table(VIDEOS_TABLE).scan("", limit=10_000, model=Video)
        except NotFoundError:
            return []
        return sorted((v for _, v in rows), key=lambda v: v.uploaded_at, reverse=True)[:limit]

    def uploaded(self, video_id: str) -> bool:
        """Whether an original was stored under this id (it may not be catalogued yet)."""
        return any(True for _ in self.files.list(f"uploads/{video_id}/"))

    # -- views -------------------------------------------------------------------------------

    def trending(self, now_s: float, limit: int = 8) -> list[Trending]:
        """The most viewed videos in the current window (``videosite.trending``), most
        first, with the catalog's title where the window row has none."""
        found = ranked(current_rows(self.tables, now_s), now_s, limit)
        return [t if t.title is not None
                else Trending(t.video_id, t.views, getattr(self.video(t.video_id), "title",
                                                           None))
                for t in found]

    def views_per_hour(self, video_id: str, now_s: float,
                       hours: int = 24) -> list[HourCount]:
        """One video's views in each of the last ``hours`` clock hours, oldest first."""
        return per_hour(window_rows(self.tables, f"{video_id}/"), now_s, hours)

    # -- progress ------------------------------------------------------------------------------

    def progress(self, video_id: str) -> dict[str, Progress]:
        """The latest Progress of each stage for one video, from the status stream."""
        codec = status.codec
        with self._progress_lock:
            for record in self._status.read():
                try:
                    p = codec.decode(record.value, record.headers)
                except (MillstreamError, ValueError):  # a foreign record: skip it
                    continue
                if isinstance(p, Progress):
                    self._progress.setdefault(p.video_id, {})[p.stage] = p
            return dict(self._progress.get(video_id, {}))

    # -- operations ----------------------------------------------------------------------------

    def ops(self) -> OpsView:
        """The services' metrics (last 10 minutes) and the latest exceptions."""
        with self._metrics_lock:
            if self._metrics is None:
                try:
                    self._metrics = MetricsView(self.streams)
                except UnknownStreamError:  # no service has run yet
                    pass
            snapshot = None
            if self._metrics is not None:
                self._metrics.refresh()
                snapshot = self._metrics.snapshot()
        with self._progress_lock:
            for record in self._exceptions_tail.read():
                failure = parse_exception(record)
                if failure is not None:
                    self._exceptions.append(failure)
            del self._exceptions[:-LATEST_EXCEPTIONS]
            latest = list(reversed(self._exceptions))
        return OpsView(snapshot, latest)

    # -- recording uploads -----------------------------------------------------------------------

    async def send(self, stream: str, value: Any, *, key: str) -> Position:
        """Send one record and wait until it is stored, at most ``settings.record_timeout_s``
        (then TimeoutError: the record may still be stored later). A producer that failed a
        write (``DeliveryError``) or was closed refuses every record after it, so it is
        replaced by a new one before the error is raised: the next request is sent afresh."""
        writer = self.writer
        try:
            return await asyncio.wait_for(writer.send(stream, value, key=key),
                                          self.settings.record_timeout_s)
        except (DeliveryError, ClosedError):
            await self._replace_writer(writer)
            raise

    async def _replace_writer(self, failed: AsyncWriter) -> None:
        if self.writer is not failed:  # another request replaced it already
            return
        self.writer = await asyncio.to_thread(AsyncWriter, self.streams, app)
        try:
            await failed.aclose()
        except MillstreamError as exc:  # what it held was not stored: its senders were told
            log.warning("closing the failed producer of the web server: %s", exc)

    def close(self) -> None:
        self._status.close()
        self._exceptions_tail.close()
        with self._metrics_lock:
            if self._metrics is not None:
                self._metrics.close()
        for resource in self._owned:
            resource.close()
