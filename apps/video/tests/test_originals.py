"""Which originals the site deletes, and which it keeps, on a real platform.

The join deletes an original only when the probe found it not to be a video, and only the
site's own ``uploads/<video_id>/source.*``. A later stage's refusal, a limit, a processing
failure or an original stored under another name keeps it. A probe that cannot read a
file for a reason outside it (here: FFmpeg out of memory, through FFmpeg's own allocation
limit ``av_max_alloc``) finishes nothing: the record is retried, then goes to the
exceptions stream, and the original waits for the replay.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

import av
import pytest

from millstream.files import FileRef
from millstream.operations._replay import replay
from millstream.testing import TestPlatform
from videosite.app import app, discarded_original
from videosite.media import NotAVideo, probe
from videosite.media.errors import MediaUnavailable, from_av
from videosite.models import ErrorKind, Probed, Thumbnails, Transcoded, Upload, Video
from videosite.pipeline import new_video_id
from videosite_testing import STARVED, ffmpeg_allocations_at_most

STAGES = ("probe", "thumbnail", "transcode", "join")


def _uploads(platform: TestPlatform) -> list[str]:
    """The names under ``uploads/``, relative to the store's root, sorted."""
    root = platform.files.url.rstrip("/") + "/"
    return sorted(ref.url.removeprefix(root) for ref in platform.files.list("uploads/"))


def _result(model: type[Probed] | type[Thumbnails] | type[Transcoded], video_id: str,
            kind: ErrorKind | None) -> Probed | Thumbnails | Transcoded:
    now = time.time()
    if kind is None:
        return model(video_id=video_id, ok=True, started_at=now, finished_at=now)
    return model(video_id=video_id, ok=False, error=f"{kind}: as the test says",
                 error_kind=kind, started_at=now, finished_at=now)


#: name -> (where the Upload's source is stored, or None for the site's own name,
#:          the probe's, the thumbnail's and the transcode's error kind, None for ok)
CASES: dict[str, tuple[str | None, ErrorKind | None, ErrorKind | None, ErrorKind | None]] = {
    "not a video": (None, "not_a_video", "not_a_video", "not_a_video"),
    "probe ok, thumbnail refused": (None, None, "not_a_video", None),
    "probe ok, transcode refused": (None, None, None, "not_a_video"),
    "over a limit": (None, "rejected", "rejected", "rejected"),
    "processing failed": (None, "processing_error", None, None),
    "another writer's object": ("imports/clip.mp4", "not_a_video", "not_a_video", "not_a_video"),
    "another video's original": ("uploads/{other}/source.mp4", "not_a_video", "not_a_video",
                                 "not_a_video"),
}


def test_the_join_deletes_only_the_own_original_of_what_the_probe_found_not_a_video() -> None:
    with TestPlatform(app) as platform:
        ids = {name: new_video_id() for name in CASES}
        other = new_video_id()  # a video of its own, whose original another Upload names
        kept = platform.files.put(f"uploads/{other}/source.mp4", b"other's original")
        for name, (stored_as, *kinds) in CASES.items():
            video_id = ids[name]
            if stored_as is None:
                source = platform.files.put(f"uploads/{video_id}/source.mp4", name.encode())
            elif "{other}" in stored_as:
                source = kept
            else:
                source = platform.files.put(stored_as, name.encode())
            platform.send("uploads", Upload(video_id=video_id, title=name, source=source,
                                            uploaded_at=time.time(), size=source.size),
                          key=video_id)
            for stream, model, kind in zip(("probes", "thumbnails", "renditions"),
                                           (Probed, Thumbnails, Transcoded), kinds, strict=True):
                platform.send(stream, _result(model, video_id, kind), key=video_id)
        platform.run_until_idle("join")

        finished = {v.video_id: v for v in platform.values("videos") if v.status != "processing"}
        assert {name: (finished[ids[name]].status, finished[ids[name]].failed_stage)
                for name in CASES} == {
            "not a video": ("failed", "probe"),
            "probe ok, thumbnail refused": ("failed", "thumbnail"),
            "probe ok, transcode refused": ("failed", "transcode"),
            "over a limit": ("failed", "probe"),
            "processing failed": ("failed", "probe"),
            "another writer's object": ("failed", "probe"),
            "another video's original": ("failed", "probe"),
        }
        assert _uploads(platform) == sorted(
            [f"uploads/{other}/source.mp4"]
            + [f"uploads/{ids[name]}/source.mp4" for name, (stored_as, *_) in CASES.items()
               if stored_as is None and name != "not a video"])
        assert [ref.url.rsplit("/", 2)[-2:] for ref in platform.files.list("imports/")] \
            == [["imports", "clip.mp4"]]


def test_an_original_is_discarded_only_under_its_own_videos_name() -> None:
    root = "file:///srv/files"
    video_id = "0123456789abcdef"

    def video(url: str) -> Video:
        return Video(video_id=video_id, title="t", status="failed", failed_stage="probe",
                     error_kind="not_a_video", reason="not a video: x",
                     source=FileRef(url=url, size=1, sha256="0" * 64), uploaded_at=0.0)

    own = video(f"{root}/uploads/{video_id}/source.mp4")
    assert discarded_original(own, root) == own.source
    assert discarded_original(own, root + "/") == own.source
    assert discarded_original(video(f"{root}/uploads/{video_id}/source"), root) is not None
    for url in (f"{root}/uploads/fedcba9876543210/source.mp4",   # another video's
                f"{root}/uploads/{video_id}/thumbs/0.jpg",       # not the original
                f"{root}/uploads/{video_id}/source.mp4/x",
                f"{root}/imports/{video_id}/source.mp4",
                f"file:///elsewhere/uploads/{video_id}/source.mp4",  # another store
                f"{root}/uploads/{video_id}/source.mp4\n"):
        assert discarded_original(video(url), root) is None, url


# -- an error outside the file, during the probe ------------------------------------------------


def test_ffmpeg_out_of_memory_is_retriable_not_a_refusal(clips: dict[str, Path]) -> None:
    with ffmpeg_allocations_at_most(STARVED), pytest.raises(MediaUnavailable) as raised:
        probe(clips["tiny"])
    assert raised.value.retriable
    assert str(raised.value).startswith("reading the video failed for a reason outside the "
                                        "file, to be retried: MemoryError: "), raised.value
    assert probe(clips["tiny"]).duration_s == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("error", [
    av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory", "clip.mp4"),
    av.error.OSError(errno.EIO, "Input/output error", "clip.mp4"),
    av.error.PermissionError(errno.EACCES, "Permission denied", "clip.mp4"),
    av.error.FileNotFoundError(errno.ENOENT, "No such file or directory", "clip.mp4"),
    av.error.TimeoutError(errno.ETIMEDOUT, "Connection timed out", "clip.mp4"),
    av.error.ExitError(-0x54495845, "Immediate exit requested"),
    av.error.BugError(-0x21475542, "Internal bug, should not have happened"),
], ids=lambda e: type(e).__name__)
def test_an_ffmpeg_error_from_the_environment_is_retriable(error: av.FFmpegError) -> None:
    translated = from_av(error, "not a readable video")
    assert type(translated) is MediaUnavailable and translated.retriable


@pytest.mark.parametrize("error", [
    av.error.InvalidDataError(-0x41444E49, "Invalid data found when processing input"),
    av.error.EOFError(-0x20464F45, "End of file"),
    av.error.DemuxerNotFoundError(-0x58554DF8, "Demuxer not found"),
    av.error.DecoderNotFoundError(-0x434544F8, "Decoder not found"),
    av.error.PatchWelcomeError(-0x45574150, "Not yet implemented in FFmpeg, patches welcome"),
], ids=lambda e: type(e).__name__)
def test_an_ffmpeg_error_about_the_bytes_is_not_a_video(error: av.FFmpegError) -> None:
    translated = from_av(error, "not a readable video")
    assert type(translated) is NotAVideo and not translated.retriable
    assert str(translated) == f"not a readable video ({type(error).__name__})"


def test_a_probe_out_of_memory_keeps_the_original_and_goes_to_the_exceptions_stream(
        clips: dict[str, Path]) -> None:
    with TestPlatform(app) as platform:
        video_id = new_video_id()
        source = platform.files.put(f"uploads/{video_id}/source.mp4", clips["tiny"],
                                    content_type="video/mp4")
        platform.send("uploads", Upload(video_id=video_id, title="starved", source=source,
                                        uploaded_at=time.time(), size=source.size),
                      key=video_id)
        with ffmpeg_allocations_at_most(STARVED):
            platform.run_until_idle("probe", timeout=60.0)
        for service in STAGES[1:]:
            platform.run_until_idle(service, timeout=120.0)

        # no probe result: the video is not finished, and its original stays
        assert platform.values("probes") == []
        assert [(v.video_id, v.status) for v in platform.values("videos")] \
            == [(video_id, "processing")]
        assert _uploads(platform) == [f"uploads/{video_id}/source.mp4"]
        failures = platform.exceptions()
        assert [(f.service, f.key(), f.document["stage"], f.error_type) for f in failures] \
            == [("probe", video_id.encode(), "handle", "videosite.media.errors.MediaUnavailable")]
        assert failures[0].document["attempts"] == app.get("probe").retry.attempts

        # once the cause is gone, the replay finishes the video
        assert len(replay(platform.streams, failures)) == 1
        for service in ("probe", "join"):
            platform.run_until_idle(service, timeout=60.0)
        assert [v.status for v in platform.values("videos")] == ["processing", "ready"]
        assert _uploads(platform) == [f"uploads/{video_id}/source.mp4"]
