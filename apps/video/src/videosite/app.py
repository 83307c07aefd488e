"""The video site's processing pipeline as millstream services.

    uploads ─► probe ─────► probes ─────┐
            ├► thumbnail ─► thumbnails ─┼─► join ─► videos ─► analytics (SQL tables)
            └► transcode ─► renditions ─┘     (the catalog: table videos)
               probe, thumbnail, transcode ─► status (Progress)

    POST /api/views ─► views ─┬─► view-titles ─► titled-views ─► views-hourly (window table)
                     videos ──┘  (stream–table join:           (hopping windows: views per
                                  the catalog's title)          video, an hour every 5 min)

Every stream has the app's partition count and every record is keyed by the video id, so
the join — stateful, checkpointed — sees all parts of a video on one partition. Run it with
``millstream up videosite.app:app``; draw it with ``millstream graph videosite.app:app``.

Each stream is declared once, with its payload, as a typed handle (``uploads``,
``probes`` ...) that the services name. The catalog is the join's table output: the join
writes each video to the videos stream and the runtime keeps table ``videos`` equal to that
stream, in batches after the join's commits. What a service keeps between records —
analytics' database — is opened by its ``lifespan`` before the first record, handed to the
handler as its third argument and closed after the last. Transcode's live progress goes out
with ``ctx.emit_now``; ``status``, which three services write, names each record's writer
(the ``millstream-writer`` header), so ``millstream diff`` compares a shadow with its own
service's records only.
"""

from __future__ import annotations

import logging
import re

from millstream import MillstreamError, NotFoundError, Retention
from millstream.faults import fault_point
from millstream.files import FileRef
from millstream.runtime import METRICS_STREAM, MetricsRecord
from millstream.service import App, Context, Hopping, Reducer

from .analytics import AnalyticsDB
from .config import analytics_db_url, media_limits
from .join import VideoFailed, receive
from .models import Probed, Progress, Thumbnails, TitledView, Transcoded, Upload, Video, View
from .stages import run_probe, run_thumbnails, run_transcode
from .trending import HOP_S, WINDOW_S, add_view, no_views
from .trending import TABLE as TRENDING_TABLE

__all__ = ["app", "catalog", "metrics", "probes", "renditions", "status", "thumbnails",
           "titled", "titled_views", "uploads", "videos", "view_titles", "views",
           "views_hourly"]

log = logging.getLogger(__name__)

app = App("videosite", partitions=4)

uploads = app.stream("uploads", Upload)
probes = app.stream("probes", Probed)
thumbnails = app.stream("thumbnails", Thumbnails)
renditions = app.stream("renditions", Transcoded)
status = app.stream("status", Progress)
#: every video's description as the join finishes it: the catalog's changelog
videos = app.stream("videos", Video)
#: the catalog: every video's latest description, by id, fed from the videos stream
catalog = app.table("videos", Video, key="video_id", indexes=["status"])
#: the platform's metrics stream (one partition), read by analytics
metrics = app.stream(METRICS_STREAM, MetricsRecord, partitions=1)
#: how long view events are kept: a week, longer than the view windows are (two days), so
#: replaying what is kept rebuilds every window the table holds
VIEWS_KEPT = Retention(max_age=7 * 86400)
#: the players' events as the site accepted them (POST /api/views), keyed by video id
views = app.stream("views", View, retention=VIEWS_KEPT)
#: the same events with the catalog's title of their video
titled_views = app.stream("titled-views", TitledView, retention=VIEWS_KEPT)

#: how much the transcode's fraction must grow before another Progress record is sent
PROGRESS_STEP = 0.1
#: where the site stores an original, relative to the file store's root: the only objects the
#: join ever deletes (an Upload naming anything else — another video's original, an object a
#: program of its own stored — never loses it)
OWN_ORIGINAL = re.compile(r"uploads/(?P<video_id>[0-9a-f]{16})/source(\.[a-z0-9]{1,8})?")
#: uploads the transcoder takes per poll: one, since each takes seconds to minutes — with 500,
#: a poll took every queued upload and the next poll came only after all of them, so 20
#: queued clips on a loaded machine (17 s each) outlasted max_poll_interval_ms (300 s): the
#: member was dropped from its group and its finished work was to be done again
TRANSCODE_BATCH = 1
#: the join's checkpoint interval: a stateful service commits (and writes its table rows)
#: with its checkpoints, so a video is in the catalog up to this long after its last stage
#: (at the default 5 s: 2.5 s on average; a checkpoint with nothing changed writes nothing)
JOIN_CHECKPOINT_S = 0.5
#: the view windows: events up to 5 s out of order wait, a window takes events up to a
#: minute after its end, is kept two days after it closed (the video page shows a day), and
#: its row reaches the table at most a second after its events (with the checkpoints)
VIEWS_LATENESS_S = 5
VIEWS_GRACE_S = 60
VIEWS_WINDOWS_KEPT_S = 2 * 86400
VIEWS_CHECKPOINT_S = 1.0
#: the fault point (``MILLSTREAM_FAULT``) visited once per video when its transcode is half done
HALFWAY_FAULT = "videosite.transcode.halfway"


def _done(stage: str, video_id: str, ok: bool, error: str | None) -> Progress:
    return Progress(video_id=video_id, stage=stage, fraction=1.0,
                    message="done" if ok else f"failed: {error}")


@app.service(inputs=[uploads], outputs=[probes, status], uses=("files",))
def probe(upload: Upload, ctx: Context) -> None:
    """Describes the original with PyAV and refuses media bombs.

    Container, duration, codecs, size, frame rate, bit rate, rotation and audio."""
    result = run_probe(upload, ctx.files, media_limits())
    ctx.emit(probes, result)
    ctx.emit(status, _done("probe", upload.video_id, result.ok, result.error))


@app.service(inputs=[uploads], outputs=[thumbnails, status], uses=("files",))
def thumbnail(upload: Upload, ctx: Context) -> None:
    """Stills at several points of the video and a poster, as JPEGs in the file store."""
    result = run_thumbnails(upload, ctx.files, media_limits())
    ctx.emit(thumbnails, result)
    ctx.emit(status, _done("thumbnail", upload.video_id, result.ok, result.error))


@app.service(inputs=[uploads], outputs=[renditions, status], uses=("files",),
             max_batch=TRANSCODE_BATCH)
def transcode(upload: Upload, ctx: Context) -> None:
    """Encodes the H.264 + AAC rendition ladder (never upscaled) and its HLS playlists.

    Progress goes to the status stream while it runs (``emit_now``: at once, not when the
    video is done; a shadow's to its own status stream)."""
    video_id = upload.video_id
    sent = [0.0]
    halfway = [False]

    def progress(fraction: float, message: str) -> None:
        ctx.emit_now(status, Progress(video_id=video_id, stage="transcode",
                                      fraction=fraction, message=message))

    progress(0.0, "started")

    def report(fraction: float) -> None:
        if fraction >= 0.5 and not halfway[0]:
            halfway[0] = True
            fault_point(HALFWAY_FAULT)  # crash tests: die in the middle of a video
        if fraction < 1.0 and fraction - sent[0] < PROGRESS_STEP:
            return
        sent[0] = fraction
        progress(fraction, "encoding")

    result = run_transcode(upload, ctx.files, media_limits(), progress=report)
    if not result.ok or sent[0] < 1.0:
        ctx.emit_now(status, _done("transcode", video_id, result.ok, result.error))
    ctx.emit(renditions, result)


@app.service(inputs=[uploads, probes, thumbnails, renditions], outputs=[catalog],
             stateful=True, uses=("files",), checkpoint_interval=JOIN_CHECKPOINT_S)
def join(part: Upload | Probed | Thumbnails | Transcoded, ctx: Context) -> Video | None:
    """Waits for all parts of a video, then writes its description to videos (the catalog).

    The upload, probe, thumbnails and renditions; ready, or failed with the reason. A part
    arriving again after its video finished (an at-least-once duplicate) is dropped. A
    failed video is also reported to the exceptions stream, with its stage and reason; the
    original of one the probe found not to be a video is deleted (``discarded_original``)."""
    video = receive(ctx.state, part, ctx.record.timestamp)
    if video is not None and video.status == "failed":
        ctx.report(VideoFailed.of(video))
        _discard_refused(video, ctx)
    return video


def discarded_original(video: Video, store_url: str) -> FileRef | None:
    """The original the join deletes for a finished ``video``, or None to keep it.

    Only one refused by the probe as not a video (``failed_stage == "probe"``,
    ``error_kind == "not_a_video"``): the probe reads the whole container, so its verdict is
    about the bytes, and the site will never serve or process them. And only the site's own
    object for this video, ``uploads/<video_id>/source.*`` in the store at ``store_url``.

    Kept: an original the probe accepted and a later stage refused (the probe's verdict
    stands; the thumbnail or transcode failure may be theirs); one over a limit
    (``rejected``: the limits are the operator's, and a wrong one must not delete valid
    videos; see docs/video.md for how to remove them); one that failed in processing (to
    be processed again once the cause is fixed). A probe that could not read the file for a
    reason outside it (memory, I/O, permissions) finishes nothing: the record is retried and
    then goes to the exceptions stream.
    """
    if video.status != "failed" or video.failed_stage != "probe" \
            or video.error_kind != "not_a_video":
        return None
    name = video.source.url.removeprefix(store_url.rstrip("/") + "/")
    own = OWN_ORIGINAL.fullmatch(name)
    if name == video.source.url or own is None or own["video_id"] != video.video_id:
        log.warning("the original %s of video %s, refused as not a video, is kept: it is "
                    "not the site's uploads/%s/source.* in %s", video.source.url,
                    video.video_id, video.video_id, store_url)
        return None
    return video.source


def _discard_refused(video: Video, ctx: Context) -> None:
    """Delete the original ``discarded_original`` names. Every stage has reported by now
    (the join finishes a video only then). A shadow join deletes nothing: the originals
    are production's. A failed deletion is logged, never raised: the video's record
    matters more than the object."""
    if ctx.shadow is not None:
        return
    store = ctx.files.store
    original = discarded_original(video, store.url)
    if original is None:
        return
    try:
        store.delete(original)
    except NotFoundError:  # deleted already: this part came again after a crash
        pass
    except MillstreamError as exc:  # the video is recorded all the same; the object stays
        log.warning("the original %s of refused video %s was not deleted: %s",
                    original.url, video.video_id, exc)


def open_analytics_db(ctx: Context) -> AnalyticsDB:
    """The analysts' database (closed when the service stops: it is a context manager)."""
    return AnalyticsDB(analytics_db_url())


@app.service(inputs=[videos, metrics], uses=("sql:analytics",), lifespan=open_analytics_db)
def analytics(value: Video | MetricsRecord, ctx: Context, db: AnalyticsDB) -> None:
    """Writes flat SQL tables for analysts (SQLite, or PostgreSQL), from the beginning of videos.

    Reads videos and millstream.metrics; tables videos, stage_times and service_metrics,
    and views over them (videos_per_day, failures_by_reason, processing_by_service ...)."""
    if isinstance(value, Video):
        db.record(value)
    elif value.app == app.name:
        db.record_metrics(f"{ctx.record.partition}/{ctx.record.offset}", value)


def titled(view: View, video: Video | None) -> TitledView:
    """A view with its video's title as the catalog has it (None: not catalogued yet)."""
    return TitledView(**view.model_dump(), title=video.title if video is not None else None)


#: stream–table join: each view with the current catalog row of its video (the join keeps
#: the rows of the videos stream, its partition's, in its state)
view_titles = app.join_table("view-titles", views, videos, titled, output=titled_views)

#: views per video over hopping windows of an hour every five minutes, by the site's time
#: of each event (``videosite.trending``); an idle partition's windows still close
views_hourly = app.windowed(
    TRENDING_TABLE, titled_views, window=Hopping(size=WINDOW_S, every=HOP_S),
    aggregate=Reducer(no_views, add_view), time="at", lateness=VIEWS_LATENESS_S,
    grace=VIEWS_GRACE_S, idle_timeout=30, retention=VIEWS_WINDOWS_KEPT_S,
    checkpoint_interval=VIEWS_CHECKPOINT_S)
