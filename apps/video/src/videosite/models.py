"""The payloads of the video site's streams, one pydantic model per stream.

Every record about a video is keyed by its ``video_id``, so a video's upload, stage results,
progress and description all land on the same partition of their streams. Each stage emits
exactly one result per upload — ``ok=False`` with ``error`` and ``error_kind`` when the media
is refused — so the join always completes::

    uploads ─► probe ─────► probes ─────┐
            ├► thumbnail ─► thumbnails ─┼─► join ─► videos ─► catalog, analytics
            └► transcode ─► renditions ─┘
                        └─► status (Progress, while it runs)

    POST /api/views ─► views ─► view-titles ─► titled-views ─► views-hourly (window table)
                  (View)     (+ the catalog's title)         (hopping windows, views per video)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from millstream.files import FileRef

__all__ = [
    "ErrorKind",
    "Probed",
    "Progress",
    "RenditionInfo",
    "StageResult",
    "StageTiming",
    "Status",
    "Thumbnails",
    "TitledView",
    "Transcoded",
    "Upload",
    "Video",
    "VideoMetadata",
    "View",
    "ViewEvent",
]

Status = Literal["processing", "ready", "failed"]
#: what a player reports: a playback started, how far it got, that it ended (or was left)
ViewEvent = Literal["start", "progress", "end"]
#: why a stage refused a video: not a video container, over a limit, or FFmpeg failed
ErrorKind = Literal["not_a_video", "rejected", "processing_error"]


class Upload(BaseModel):
    """A stored original, waiting to be processed (stream ``uploads``)."""

    schema_name: ClassVar[str] = "videosite.upload"
    schema_version: ClassVar[int] = 1

    video_id: str
    title: str
    source: FileRef
    uploaded_at: float  # seconds since the epoch
    content_type: str | None = None
    size: int


class StageResult(BaseModel):
    """What every stage result carries: the video, success, and when the stage ran."""

    video_id: str
    ok: bool
    error: str | None = None
    error_kind: ErrorKind | None = None
    started_at: float
    finished_at: float


class VideoMetadata(BaseModel):
    """What the probe found. ``width``/``height`` are as displayed (rotation applied)."""

    container: str
    duration_s: float
    video_codec: str
    width: int
    height: int
    stored_width: int
    stored_height: int
    fps: float
    bit_rate: int | None
    rotation: int
    has_audio: bool
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    size_bytes: int
    frame_count: int


class Probed(StageResult):
    """The probe's result (stream ``probes``)."""

    schema_name: ClassVar[str] = "videosite.probed"
    schema_version: ClassVar[int] = 1

    metadata: VideoMetadata | None = None


class Thumbnails(StageResult):
    """Stills at several points of the video and a poster (stream ``thumbnails``)."""

    schema_name: ClassVar[str] = "videosite.thumbnails"
    schema_version: ClassVar[int] = 1

    thumbnails: list[FileRef] = Field(default_factory=list)
    poster: FileRef | None = None


class RenditionInfo(BaseModel):
    """One rung of the ladder as made: an H.264 + AAC fragmented MP4 and its playlist."""

    name: str
    width: int
    height: int
    bitrate: int  # average bits per second over the file
    peak_bitrate: int
    has_audio: bool
    ref: FileRef
    playlist: FileRef


class Transcoded(StageResult):
    """The renditions made and the HLS master playlist over them (stream ``renditions``)."""

    schema_name: ClassVar[str] = "videosite.transcoded"
    schema_version: ClassVar[int] = 1

    renditions: list[RenditionInfo] = Field(default_factory=list)
    hls_master: FileRef | None = None


class Progress(BaseModel):
    """How far a stage is with a video (stream ``status``); ``fraction`` is 0..1."""

    schema_name: ClassVar[str] = "videosite.progress"
    schema_version: ClassVar[int] = 1

    video_id: str
    stage: str
    fraction: float
    message: str = ""


class StageTiming(BaseModel):
    """When a stage started and finished with a video, and whether it succeeded."""

    started_at: float
    finished_at: float
    ok: bool

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


class Video(BaseModel):
    """Everything known about a video (stream ``videos``, table ``videos``)."""

    schema_name: ClassVar[str] = "videosite.video"
    schema_version: ClassVar[int] = 1

    video_id: str
    title: str
    status: Status
    reason: str | None = None
    failed_stage: str | None = None
    error_kind: ErrorKind | None = None
    source: FileRef
    metadata: VideoMetadata | None = None
    thumbnails: list[FileRef] = Field(default_factory=list)
    poster: FileRef | None = None
    renditions: list[RenditionInfo] = Field(default_factory=list)
    hls_master: FileRef | None = None
    uploaded_at: float
    finished_at: float | None = None
    stages: dict[str, StageTiming] = Field(default_factory=dict)


class View(BaseModel):
    """One player event (stream ``views``, keyed by the video id), as the site accepted it.

    ``at`` is the server's clock when it accepted the event (seconds since the epoch): the
    event time of the view windows, never a time the client claims. ``session`` is the
    player's random id for one playback (start … end); ``position_s`` where in the video."""

    schema_name: ClassVar[str] = "videosite.view"
    schema_version: ClassVar[int] = 1

    video_id: str
    event: ViewEvent
    session: str
    position_s: float
    at: float


class TitledView(View):
    """A view with the title the catalog had for its video (stream ``titled-views``);
    ``title`` is None when the catalog had no row for the video when the view came."""

    schema_name: ClassVar[str] = "videosite.titled-view"
    schema_version: ClassVar[int] = 1

    title: str | None = None
