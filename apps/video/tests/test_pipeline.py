"""The processing pipeline end to end, in-process: five uploads through every service.

Three real clips (one silent and rotated, one portrait), a PNG and a "media bomb" (a clip
over the duration limit, lowered for the test) are submitted; probe, thumbnail, transcode,
join run until idle; the catalog table, the join's state, the status stream and
— started only afterwards — the analytics tables are checked value by value.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from millstream import open_streams
from millstream.files import FileStore, open_files
from millstream.runtime import ServiceRunner
from millstream.tables import Tables, open_tables
from millstream.tables._materialize import rebuild
from millstream.testing import TestPlatform
from videosite.analytics import AnalyticsDB
from videosite.app import app
from videosite.join import in_flight
from videosite.models import Progress, Video
from videosite.pipeline import submit
from videosite_testing import Idle

STAGES = ("probe", "thumbnail", "transcode", "join")
#: seconds after the first upload that each of the five is uploaded: two days of two, one of one
UPLOADED_AFTER = (0, 3_600, 90_000, 93_600, 180_000)


def run_until_idle(platform: TestPlatform, service: str, files: FileStore, tables: Tables,
                   timeout: float = 30.0, lag: int = 0) -> None:
    """``platform.run_until_idle`` with the file store and tables given to the service
    (TestPlatform does not offer ctx.files / ctx.tables yet). ``lag``: what may be left —
    a service reading millstream.metrics always has its own final record ahead of it."""
    deadline = time.monotonic() + timeout
    while True:
        with open_streams(platform.url) as streams:
            runner = ServiceRunner(platform.app, service, streams, clock=platform.clock,
                                   poll_timeout_s=0.05, metrics_interval_s=60.0,
                                   files=files, tables=tables)
            runner.run(until=Idle(deadline))
        if platform.lag(service) <= lag:
            return
        assert time.monotonic() < deadline, f"{service} left lag after {timeout} s"


@dataclass
class Pipeline:
    platform: TestPlatform
    files: FileStore
    tables: Tables
    ids: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def pipeline(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Pipeline]:
    home = tmp_path_factory.mktemp("videosite-home")
    png = home / "picture.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(png)
    sources = {"landscape": clips["landscape"], "silent": clips["rotated"],
               "portrait": clips["portrait"], "png": png, "bomb": clips["wide"]}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIDEOSITE_MAX_DURATION_S", "2.5")  # "wide" lasts 3 s: a bomb here
        files = open_files((home / "files").as_uri())
        tables = open_tables(f"sqlite:///{home / 'tables.db'}")
        with TestPlatform(app) as platform:
            ids = {name: submit(platform.streams, files, path, f"clip {name}",
                                now=1_750_000_000.0 + offset)  # 2025-06-15 15:06 UTC
                   for offset, (name, path) in zip(UPLOADED_AFTER, sources.items(),
                                                   strict=True)}
            for service in STAGES:
                run_until_idle(platform, service, files, tables)
            yield Pipeline(platform, files, tables, ids, home)
        tables.close()
        files.close()


def catalog(p: Pipeline) -> dict[str, Video]:
    return {key: Video.model_validate(doc)
            for key, doc in p.tables.table("videos").scan("", limit=100)}


def test_every_upload_ends_ready_or_failed_in_the_catalog(pipeline: Pipeline) -> None:
    videos = catalog(pipeline)
    ids = pipeline.ids
    assert sorted(videos) == sorted(ids.values())
    status = {name: videos[vid].status for name, vid in ids.items()}
    assert status == {"landscape": "ready", "silent": "ready", "portrait": "ready",
                      "png": "failed", "bomb": "failed"}
    # the join reports each failed video once, with its stage and reason
    assert sorted((e.key(), e.service, e.message) for e in pipeline.platform.exceptions()) \
        == sorted((ids[n].encode(), "join", f"video {ids[n]} failed in probe ({kind}): "
                   f"{videos[ids[n]].reason}")
                  for n, kind in (("png", "not_a_video"), ("bomb", "rejected")))


def test_only_the_original_the_probe_found_not_a_video_is_deleted(pipeline: Pipeline) -> None:
    # the PNG is not a video: its original goes; the bomb is over a limit the operator set:
    # kept (a wrong limit must not delete valid videos)
    root = pipeline.files.url.rstrip("/") + "/"
    stored = sorted(ref.url.removeprefix(root) for ref in pipeline.files.list("uploads/"))
    ids = pipeline.ids
    assert stored == sorted(f"uploads/{ids[n]}/source.mp4"
                            for n in ("landscape", "silent", "portrait", "bomb"))


def test_ready_videos_carry_probe_thumbnails_and_renditions(pipeline: Pipeline) -> None:
    videos = catalog(pipeline)
    expect = {  # display size, duration, audio, renditions (name, width, height)
        "landscape": (320, 240, 2.0, True, [("240p", 320, 240)]),
        "silent": (240, 320, 2.0, False, [("240p", 240, 320)]),
        "portrait": (360, 640, 2.0, True, [("240p", 240, 426), ("360p", 360, 640)]),
    }
    for name, (width, height, seconds, audio, ladder) in expect.items():
        video = videos[pipeline.ids[name]]
        meta = video.metadata
        assert meta is not None
        assert (meta.width, meta.height, meta.has_audio) == (width, height, audio)
        assert meta.duration_s == pytest.approx(seconds, abs=0.05)
        assert meta.rotation == (90 if name == "silent" else 0)
        assert (meta.audio_codec is None) == (not audio)
        assert [(r.name, r.width, r.height) for r in video.renditions] == ladder
        assert all(r.has_audio == audio for r in video.renditions)
        assert all(r.height <= max(width, height) and r.width <= max(width, height)
                   for r in video.renditions)  # never upscaled
        assert len(video.thumbnails) == 3 and video.poster is not None
        assert all(pipeline.files.read_bytes(t)[:3] == b"\xff\xd8\xff"
                   for t in [*video.thumbnails, video.poster])
        assert video.hls_master is not None
        master = pipeline.files.read_bytes(video.hls_master).decode()
        assert re.findall(r"^(\d+p)\.m3u8$", master, re.M) == [r[0] for r in ladder]
        assert set(video.stages) == {"probe", "thumbnail", "transcode"}
        assert all(t.ok for t in video.stages.values())
        assert video.reason is None and video.finished_at is not None


def test_the_png_and_the_bomb_fail_with_their_reasons(pipeline: Pipeline) -> None:
    videos = catalog(pipeline)
    png, bomb = videos[pipeline.ids["png"]], videos[pipeline.ids["bomb"]]
    assert (png.failed_stage, png.error_kind) == ("probe", "not_a_video")
    assert png.reason is not None and png.reason.startswith("not a video")
    assert (bomb.failed_stage, bomb.error_kind) == ("probe", "rejected")
    assert bomb.reason == "rejected: duration (s) 3 exceeds the limit of 2.5"
    for video in (png, bomb):
        assert video.renditions == [] and video.thumbnails == [] and video.hls_master is None
        assert {s: t.ok for s, t in video.stages.items()} == {
            "probe": False, "thumbnail": False, "transcode": False}


def test_the_table_equals_the_stream_replayed(pipeline: Pipeline) -> None:
    last: dict[str, Video] = {}
    for video in pipeline.platform.values("videos"):
        last[video.video_id] = video
    assert catalog(pipeline) == last
    # the join first announced each video as processing, then its outcome
    statuses = [v.status for v in pipeline.platform.values("videos")]
    assert statuses.count("processing") == 5 and len(statuses) == 10
    table = pipeline.tables.table("videos")
    assert table.info().feed == "videos"
    with open_streams(pipeline.platform.url) as streams:  # a replay from scratch agrees
        rebuild(streams, pipeline.tables, "videos", into="videos-replayed", model=Video)
    replayed = pipeline.tables.table("videos-replayed").scan("", limit=100)
    assert replayed == table.scan("", limit=100)


def test_the_join_state_is_empty_once_every_video_is_done(pipeline: Pipeline) -> None:
    state = pipeline.platform.state("join")
    assert in_flight(state) == {}
    assert sorted(state) == sorted(pipeline.ids.values())  # each a finished video's tombstone


def test_progress_rises_to_one_for_every_video(pipeline: Pipeline) -> None:
    progress: dict[tuple[str, str], list[float]] = {}
    for p in pipeline.platform.values("status"):
        assert isinstance(p, Progress)
        progress.setdefault((p.video_id, p.stage), []).append(p.fraction)
    for vid in pipeline.ids.values():
        for stage in ("probe", "thumbnail", "transcode"):
            fractions = progress[vid, stage]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for name in ("landscape", "silent", "portrait"):
        fractions = progress[pipeline.ids[name], "transcode"]
        assert fractions[0] == 0.0 and len(fractions) >= 4  # reported while it ran


def test_analytics_started_late_fills_from_the_beginning(
        pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = pipeline.home / "analytics.db"
    monkeypatch.setenv("VIDEOSITE_ANALYTICS_DB", str(db_path))
    assert not db_path.exists()  # the pipeline ran without it
    run_until_idle(pipeline.platform, "analytics", pipeline.files, pipeline.tables, lag=1)
    with AnalyticsDB(db_path) as db:
        assert db.query("SELECT COUNT(*) FROM videos") == [(5,)]
        assert db.query("SELECT day, uploaded, ready, failed, processing FROM videos_per_day "
                        "ORDER BY day") == [
            ("2025-06-15", 2, 2, 0, 0), ("2025-06-16", 2, 1, 1, 0), ("2025-06-17", 1, 0, 1, 0)]
        assert db.query("SELECT error_kind, failed_stage, videos FROM failures_by_reason "
                        "ORDER BY error_kind") == [("not_a_video", "probe", 1),
                                                   ("rejected", "probe", 1)]
        stages = db.query("SELECT stage, videos, failed FROM stage_seconds ORDER BY stage")
        assert stages == [("probe", 5, 2), ("thumbnail", 5, 2), ("transcode", 5, 2)]
        assert db.query("SELECT width, height, has_audio FROM videos WHERE video_id = ?",
                        pipeline.ids["silent"]) == [(240, 320, 0)]
        # the services' metrics records, also from the beginning: every record they read
        assert db.query("SELECT service, records_in, exceptions FROM processing_by_service "
                        "WHERE service != 'analytics' ORDER BY service") == [
            ("join", 20, 2), ("probe", 5, 0), ("thumbnail", 5, 0),
            ("transcode", 5, 0)]
        [(transcode_ms,)] = db.query(
            "SELECT mean_ms FROM processing_by_service WHERE service = 'transcode'")
        assert isinstance(transcode_ms, float) and transcode_ms > 0
    # processing the stream again changes nothing (upserts)
    with open_streams(pipeline.platform.url) as streams:
        streams.admin().reset_offsets("videosite.analytics", "videos", to="earliest")
    run_until_idle(pipeline.platform, "analytics", pipeline.files, pipeline.tables, lag=1)
    with AnalyticsDB(db_path) as db:
        assert db.query("SELECT COUNT(*) FROM videos") == [(5,)]
        assert db.query("SELECT COUNT(*) FROM stage_times") == [(15,)]
        assert db.query("SELECT records_in FROM processing_by_service "
                        "WHERE service = 'join'") == [(20,)]


def test_the_graph_names_every_service() -> None:
    out = subprocess.run([sys.executable, "-m", "millstream", "graph", "videosite.app:app"],
                         capture_output=True, text=True, check=True).stdout
    for service in app.services:
        assert f"[{service}]" in out
