"""The join on its own: parts in any order, state checkpointed while a video is in flight,
forgotten once it is done; failures reported by the first failing stage."""

from __future__ import annotations

from millstream.files import FileRef
from millstream.testing import TestPlatform
from videosite.app import app
from videosite.join import combine
from videosite.models import Probed, RenditionInfo, Thumbnails, Transcoded, Upload, Video

REF = FileRef(url="file:///x/source.mp4", size=10, sha256="0" * 64)


def parts(video_id: str, *, probe_ok: bool = True, transcode_ok: bool = True
          ) -> tuple[Upload, Probed, Thumbnails, Transcoded]:
    times = {"started_at": 100.0, "finished_at": 101.5}
    upload = Upload(video_id=video_id, title=f"t-{video_id}", source=REF, uploaded_at=99.0,
                    size=10)
    probed = Probed(video_id=video_id, ok=probe_ok, **times,
                    error=None if probe_ok else "rejected: too long", error_kind=None
                    if probe_ok else "rejected")
    thumbs = Thumbnails(video_id=video_id, ok=True, thumbnails=[REF], poster=REF, **times)
    rendition = RenditionInfo(name="240p", width=320, height=240, bitrate=1, peak_bitrate=2,
                              has_audio=True, ref=REF, playlist=REF)
    made = Transcoded(video_id=video_id, ok=transcode_ok, **times,
                      renditions=[rendition] if transcode_ok else [],
                      hls_master=REF if transcode_ok else None,
                      error=None if transcode_ok else "processing failed: boom",
                      error_kind=None if transcode_ok else "processing_error")
    return upload, probed, thumbs, made


def test_state_holds_a_video_in_flight_across_restarts_and_forgets_it_when_done() -> None:
    upload, probed, thumbs, made = parts("v1")
    with TestPlatform(app) as platform:
        platform.send("probes", probed, key="v1")  # a stage result before the upload
        platform.send("uploads", upload, key="v1")
        platform.send("thumbnails", thumbs, key="v1")
        platform.run_until_idle("join")
        state = platform.state("join")
        assert list(state) == ["v1"] and sorted(state["v1"]) == ["probe", "thumbnail", "upload"]
        assert [v.status for v in platform.values("videos")] == ["processing"]

        platform.send("renditions", made, key="v1")
        platform.run_until_idle("join")  # a new runner: the state comes from the checkpoint
        videos = platform.values("videos")
        assert [v.status for v in videos] == ["processing", "ready"]
        assert videos[-1].renditions == made.renditions and videos[-1].poster == REF
        assert platform.state("join") == {}
        assert platform.exceptions() == []


def test_a_failed_video_names_the_first_failing_stage() -> None:
    upload, probed, thumbs, made = parts("v2", probe_ok=False, transcode_ok=False)
    names = {"upload": upload, "probe": probed, "thumbnail": thumbs, "transcode": made}
    assert combine({k: v.model_dump(mode="json") for k, v in names.items() if k != "probe"}) \
        is None
    video = combine({k: v.model_dump(mode="json") for k, v in names.items()})
    assert isinstance(video, Video)
    assert (video.status, video.failed_stage, video.reason, video.error_kind) == (
        "failed", "probe", "rejected: too long", "rejected")
    assert video.renditions == [] and video.thumbnails == []
    assert video.stages["probe"].seconds == 1.5 and video.finished_at == 101.5
