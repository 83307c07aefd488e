"""The join on its own: parts in any order, state checkpointed while a video is in flight,
replaced by a tombstone once it is done (so a late duplicate part is dropped), tombstones
pruned by age and count; failures reported by the first failing stage."""

from __future__ import annotations

from typing import Any

from millstream.files import FileRef
from millstream.testing import TestPlatform
from videosite.app import app
from videosite.join import (
    FINISHED,
    PRUNE_EVERY,
    REMEMBER_FINISHED_S,
    combine,
    forget_finished,
    in_flight,
    receive,
)
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
        finished_at = platform.records("renditions")[-1].timestamp
        assert platform.state("join") == {"v1": {FINISHED: finished_at}}  # a tombstone
        assert platform.exceptions() == []


def test_a_part_sent_again_after_its_video_finished_is_dropped() -> None:
    upload, probed, thumbs, made = parts("v3")
    with TestPlatform(app) as platform:
        platform.send("uploads", upload, key="v3")
        platform.send("probes", probed, key="v3")
        platform.send("thumbnails", thumbs, key="v3")
        platform.send("renditions", made, key="v3")
        platform.run_until_idle("join")
        assert [v.status for v in platform.values("videos")] == ["processing", "ready"]
        finished_at = platform.records("renditions")[-1].timestamp

        # at-least-once: a transcoder and a prober that crashed before committing, retried,
        # and the upload resubmitted
        retried = made.model_copy(update={"started_at": 200.0, "finished_at": 201.0})
        platform.send("renditions", retried, key="v3")
        platform.send("probes", probed, key="v3")
        platform.send("uploads", upload, key="v3")
        platform.run_until_idle("join")

        assert [v.status for v in platform.values("videos")] == ["processing", "ready"]
        state = platform.state("join")
        assert state == {"v3": {FINISHED: finished_at}}
        assert in_flight(state) == {}
        assert platform.exceptions() == []


def test_tombstones_older_than_the_horizon_or_beyond_the_limit_are_forgotten() -> None:
    day = round(REMEMBER_FINISHED_S * 1000)  # in ms, as record timestamps and tombstones
    waiting = {"upload": {"video_id": "w"}}
    state: dict[str, Any] = {"a": {FINISHED: 0}, "b": {FINISHED: 10}, "c": {FINISHED: 20},
                             "d": {FINISHED: 30}, "w": waiting}
    assert forget_finished(state, day + 10) == 1  # "a" is older than a day; "b" is a day old
    assert state == {"b": {FINISHED: 10}, "c": {FINISHED: 20}, "d": {FINISHED: 30},
                     "w": waiting}
    assert forget_finished(state, day + 10, at_most=1) == 2  # the newest stays
    assert state == {"d": {FINISHED: 30}, "w": waiting}
    assert forget_finished(state, 10 * day) == 1  # videos in flight stay, however old
    assert state == {"w": waiting}


def test_finishing_videos_prune_their_partition_now_and_then() -> None:
    state: dict[str, Any] = {}
    for part in parts("old"):
        receive(state, part, now_ms=1_000)
    assert state == {"old": {FINISHED: 1_000}}
    later = 1_000 + round(REMEMBER_FINISHED_S * 1000) + 1
    names = [f"new{i}" for i in range(10 * PRUNE_EVERY)]
    for name in names:
        for part in parts(name):
            receive(state, part, now_ms=later)
    assert sorted(state) == sorted(names)  # "old" was forgotten, the new ones remembered
    assert all(entry == {FINISHED: later} for entry in state.values())


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


def test_a_failed_video_is_reported_once_to_the_exceptions_stream() -> None:
    upload, probed, thumbs, made = parts("v4", probe_ok=False, transcode_ok=False)
    ok_parts = parts("v5")
    with TestPlatform(app) as platform:
        for part in (upload, probed, thumbs, made, *ok_parts):
            stream = {Upload: "uploads", Probed: "probes", Thumbnails: "thumbnails",
                      Transcoded: "renditions"}[type(part)]
            platform.send(stream, part, key=part.video_id)
        platform.send("probes", probed, key="v4")  # a duplicate after it failed: no report
        stats = platform.run_until_idle("join")
        assert [(v.video_id, v.status) for v in platform.values("videos")
                if v.status != "processing"] == [("v4", "failed"), ("v5", "ready")]
        [found] = platform.exceptions("join")
        assert (found.document["stage"], found.error_type, found.message, found.key()) == (
            "reported", "videosite.join.VideoFailed",
            "video v4 failed in probe (rejected): rejected: too long", b"v4")
        assert found.input["stream"] == "renditions"  # the part that completed it
        assert (stats.exceptions, stats.errors) == (1, 0)
