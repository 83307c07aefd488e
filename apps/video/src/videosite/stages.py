"""The work of each processing stage, on an upload, apart from the streams that carry it.

``run_probe``, ``run_thumbnails`` and ``run_transcode`` read the original through a file store,
call the media layer, store what they make under short fixed names (the service runtime
prefixes them per input record, so a retry rewrites the same objects) and return the stage's
result. A refused or broken medium is a result with ``ok=False`` and the reason, not an
exception. A medium that could not be read for a reason outside it (a retriable
``MediaError``: out of memory, an I/O error, no permission) raises, as bugs do: the service
retries the record and then records it on the exceptions stream, for a replay; a result
would finish the video as failed for good.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from millstream.faults import fault_point
from millstream.files import FileRef, Source

from .media import (
    MediaError,
    MediaLimits,
    MediaRejected,
    NotAVideo,
    ProbeResult,
    ProcessingError,
    hls_master,
    hls_media_playlist,
    probe,
    thumbnails_and_poster,
    transcode,
)
from .models import ErrorKind, Probed, RenditionInfo, Thumbnails, Transcoded, Upload, VideoMetadata

__all__ = ["StageFiles", "describe_failure", "run_probe", "run_thumbnails", "run_transcode"]

#: a transcode that decodes less than this share of the declared duration fails as truncated
TRUNCATED_BELOW = 0.9

Clock = Callable[[], float]
HLS_TYPE = "application/vnd.apple.mpegurl"


class StageFiles(Protocol):
    """What a stage needs of a file store (``ctx.files`` or a ``FileStore``)."""

    def put(self, name: str, source: Source, *, content_type: str | None = None) -> FileRef: ...

    def local_path(self, ref: FileRef | str) -> Path: ...


def _source_unchanged(upload: Upload, files: StageFiles) -> None:
    """Check the original again once it has been read, before anything made from it is stored
    or sent: ``local_path`` hands out the store's own file, so a change made in place while the
    stage read it (for minutes, in a transcode) would otherwise be baked into outputs stored
    with fresh hashes. One stat when nothing changed; CorruptDataError (the record fails and
    is retried, then recorded on the exceptions stream) when something did."""
    fault_point("videosite.stage.before_store")
    files.local_path(upload.source)


def describe_failure(exc: MediaError) -> tuple[ErrorKind, str]:
    """The kind of a media error and the reason shown to people."""
    if isinstance(exc, NotAVideo):
        return "not_a_video", f"not a video: {exc}"
    if isinstance(exc, MediaRejected):
        return "rejected", f"rejected: {exc}"
    return "processing_error", f"processing failed: {exc}"


def metadata_of(found: ProbeResult) -> VideoMetadata:
    return VideoMetadata(
        container=found.container, duration_s=found.duration_s, video_codec=found.video_codec,
        width=found.display_width, height=found.display_height, stored_width=found.width,
        stored_height=found.height, fps=found.fps, bit_rate=found.bit_rate,
        rotation=found.rotation, has_audio=found.has_audio, audio_codec=found.audio_codec,
        audio_channels=found.audio_channels, audio_sample_rate=found.audio_sample_rate,
        size_bytes=found.size_bytes, frame_count=found.frame_count,
    )


def run_probe(upload: Upload, files: StageFiles, limits: MediaLimits,
              clock: Clock = time.time) -> Probed:
    """Describe the upload, or say why it is refused."""
    started = clock()
    try:
        found = probe(files.local_path(upload.source), limits)
        _source_unchanged(upload, files)
    except MediaError as exc:
        if exc.retriable:
            raise
        kind, reason = describe_failure(exc)
        return Probed(video_id=upload.video_id, ok=False, error=reason, error_kind=kind,
                      started_at=started, finished_at=clock())
    return Probed(video_id=upload.video_id, ok=True, metadata=metadata_of(found),
                  started_at=started, finished_at=clock())


def run_thumbnails(upload: Upload, files: StageFiles, limits: MediaLimits,
                   clock: Clock = time.time) -> Thumbnails:
    """Stills at 10 %, 50 % and 90 % of the video and a poster, stored as JPEGs. Each
    checks the limits on the headers itself before decoding, so a media bomb is never
    decoded here either, whatever an earlier stage decided."""
    started = clock()
    source = files.local_path(upload.source)
    try:
        with tempfile.TemporaryDirectory(prefix="videosite-thumbs-") as work:
            stills, cover = thumbnails_and_poster(source, Path(work) / "thumbs",
                                                  Path(work) / "poster.jpg", limits=limits)
            _source_unchanged(upload, files)
            refs = [files.put(f"thumbs/{still.name}", still, content_type="image/jpeg")
                    for still in stills]
            poster_ref = files.put("poster.jpg", cover, content_type="image/jpeg")
    except MediaError as exc:
        if exc.retriable:
            raise
        kind, reason = describe_failure(exc)
        return Thumbnails(video_id=upload.video_id, ok=False, error=reason, error_kind=kind,
                          started_at=started, finished_at=clock())
    return Thumbnails(video_id=upload.video_id, ok=True, thumbnails=refs, poster=poster_ref,
                      started_at=started, finished_at=clock())


def run_transcode(upload: Upload, files: StageFiles, limits: MediaLimits,
                  progress: Callable[[float], None] | None = None,
                  clock: Clock = time.time) -> Transcoded:
    """The rendition ladder (never upscaled), a media playlist per rendition and the HLS
    master playlist over them, all stored side by side (their URIs are relative)."""
    started = clock()
    source = files.local_path(upload.source)
    try:
        declared = probe(source, limits).duration_s
        with tempfile.TemporaryDirectory(prefix="videosite-renditions-") as work:
            made = transcode(source, work, progress=progress, limits=limits)
            decoded = max((r.duration_s for r in made), default=0.0)
            if decoded < declared * TRUNCATED_BELOW - 0.1:
                # the index promises more than the file holds: a truncated upload
                raise ProcessingError(
                    f"the file is truncated: it declares {declared:.2f} s but only "
                    f"{decoded:.2f} s could be decoded")
            _source_unchanged(upload, files)
            renditions = []
            for rendition in made:
                mp4 = f"{rendition.name}.mp4"
                ref = files.put(mp4, rendition.path, content_type="video/mp4")
                playlist = files.put(f"{rendition.name}.m3u8",
                                     hls_media_playlist(rendition, mp4).encode(),
                                     content_type=HLS_TYPE)
                renditions.append(RenditionInfo(
                    name=rendition.name, width=rendition.width, height=rendition.height,
                    bitrate=rendition.average_bandwidth, peak_bitrate=rendition.peak_bandwidth,
                    has_audio=rendition.has_audio, ref=ref, playlist=playlist))
            master = files.put("master.m3u8",
                               hls_master(made, lambda r: f"{r.name}.m3u8").encode(),
                               content_type=HLS_TYPE)
    except MediaError as exc:
        if exc.retriable:
            raise
        kind, reason = describe_failure(exc)
        return Transcoded(video_id=upload.video_id, ok=False, error=reason, error_kind=kind,
                          started_at=started, finished_at=clock())
    return Transcoded(video_id=upload.video_id, ok=True, renditions=renditions,
                      hls_master=master, started_at=started, finished_at=clock())
