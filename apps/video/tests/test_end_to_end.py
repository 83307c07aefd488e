"""The whole site end to end, on each platform, changed by configuration only.

``InProcessSite`` — what ``millstream-video demo`` and ``serve`` run — starts every service
and the web server from the platform configuration. The test sets nothing but environment
variables: nothing for the embedded default; ``MILLSTREAM_STREAMS`` / ``_FILES`` /
``_TABLES`` (and the usual ``AWS_*`` variables for the S3 endpoint) for Kafka + S3 +
PostgreSQL, where analytics writes to PostgreSQL too.

Clips are uploaded through the HTTP API, and each finished video is checked: the
renditions' sizes, durations, audio, index position and bitrate band, and that every frame
decodes with PyAV; the thumbnails are valid, distinct JPEGs; then the status API, a ranged
media request, exactly one final ``videos`` record per video, the analytics tables, and
views sent through the API counted by the view windows and shown as trending.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image, ImageChops, ImageStat
from tests.support.platform_fixtures import isolate
from tests.support.s3_fixtures import KEY, SECRET, S3Target

import millstream
from millstream.streams._reading import read_to_end
from videosite._viewers import wait_counted, watch
from videosite.analytics import AnalyticsDB
from videosite.client import UploadRefused
from videosite.config import analytics_db_url
from videosite.inprocess import InProcessSite
from videosite.media import DEFAULT_LADDER
from videosite.media.mp4 import read_boxes
from videosite.models import Video

TOKEN = "e2e-token"
#: what is uploaded: clip -> (expected ladder [(name, width, height)], audio, rotation)
EXPECT = {
    "landscape": ([("240p", 320, 240)], True, 0),
    "rotated": ([("240p", 240, 320)], False, 90),
    "portrait": ([("240p", 240, 426), ("360p", 360, 640)], True, 0),
}
RUNGS = {rung.name: rung for rung in DEFAULT_LADDER}
FPS = 25  # the sample clips' frame rate
PLATFORMS = ["embedded", pytest.param("kafka-s3-postgres", marks=pytest.mark.kafka)]


def _kafka_s3_postgres(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that points the platform at Kafka, S3 and PostgreSQL."""
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    s3: S3Target = request.getfixturevalue("s3_url")
    pg_server: str = request.getfixturevalue("pg_server")
    import psycopg

    database = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"'.encode())

    def drop() -> None:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())

    request.addfinalizer(drop)
    tables = pg_server.rsplit("/", 1)[0] + "/" + database
    return {
        "MILLSTREAM_STREAMS": f"kafka://{bootstrap}?session.timeout.ms=6000"
                              "&heartbeat.interval.ms=1000",
        "MILLSTREAM_FILES": f"{s3.child()}?endpoint_url={s3.endpoint}",
        "MILLSTREAM_TABLES": tables,
        "VIDEOSITE_ANALYTICS_DB": tables,  # analytics at scale: PostgreSQL too
        # s3fs and botocore read these; S3Proxy implements no CRC checksums
        "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


@pytest.fixture(autouse=True)
def _isolated_home() -> None:
    """Replaces the per-test home of the shared fixtures: here the module's ``run`` sets
    the home and platform once, and every test reads that same site."""


@dataclass
class Run:
    platform: str
    site: InProcessSite
    ids: dict[str, str]  # clip -> video id
    videos: dict[str, Video]  # clip -> the finished video
    refused: UploadRefused
    seconds: float


@pytest.fixture(scope="module", params=PLATFORMS)
def run(request: pytest.FixtureRequest, clips: dict[str, Path],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp(f"e2e-{request.param}")
    env = _kafka_s3_postgres(request) if request.param != "embedded" else {}
    png = home / "picture.mp4"  # an image, whatever its name says
    Image.new("RGB", (64, 48), (0, 90, 200)).save(png, format="PNG")
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, home)
        patch.delenv("VIDEOSITE_ANALYTICS_DB", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        with InProcessSite(token=TOKEN, poll_timeout_s=0.05) as site:
            started = time.monotonic()
            ids = {clip: site.upload(clips[clip], f"{clip} <b>clip</b>") for clip in EXPECT}
            with pytest.raises(UploadRefused) as refused:
                site.upload(png, "a picture")
            finished = site.wait(ids.values(), timeout=240)
            seconds = time.monotonic() - started
            assert site.errors == []
            assert set(finished) == set(ids.values()), f"not finished in 240 s: {ids}"
            yield Run(request.param, site, ids,
                      {clip: finished[vid] for clip, vid in ids.items()}, refused.value,
                      seconds)


def _get(run: Run, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, Message, bytes]:
    assert run.site.url is not None
    request = urllib.request.Request(run.site.url + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.headers, answer.read()


def test_the_data_is_where_the_configuration_says(run: Run) -> None:
    """Read with each system's own client, not millstream's: the topics, the objects and the
    catalog rows are really in Kafka, S3 and PostgreSQL (or the embedded files)."""
    config = run.site.config
    ids = sorted(run.ids.values())
    if run.platform == "embedded":
        assert (config.streams, config.files[:7], config.tables[:9]) == (
            "local:", "file://", "sqlite://")
        stored = sorted(p.relative_to(config.home / "files").as_posix()
                        for p in (config.home / "files" / "uploads").rglob("source.mp4"))
        assert stored == [f"uploads/{vid}/source.mp4" for vid in ids]
        # closing(): a sqlite3 connection's own ``with`` ends a transaction, not the
        # connection (left to the garbage collector, a ResourceWarning on Python 3.13)
        with closing(sqlite3.connect(config.home / "streams.db")) as db:
            names = {name for (name,) in db.execute("SELECT name FROM streams")}
        with closing(sqlite3.connect(config.home / "tables.db")) as db:
            rows = db.execute('SELECT COUNT(*) FROM "doc:videos"').fetchone()[0]
    else:
        import boto3
        import psycopg
        from confluent_kafka.admin import AdminClient

        bootstrap = config.streams.removeprefix("kafka://").split("?")[0]
        names = set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20).topics)
        bucket, prefix = config.files.removeprefix("s3://").split("?")[0].split("/", 1)
        endpoint = config.files.split("endpoint_url=")[1]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/uploads/")
        s3.close()
        stored = sorted(o["Key"].removeprefix(f"{prefix}/") for o in listed["Contents"])
        assert stored == [f"uploads/{vid}/source.mp4" for vid in ids]
        with psycopg.connect(config.tables) as conn:
            rows = conn.execute('SELECT COUNT(*) FROM "doc:videos"').fetchone()[0]
    assert {"uploads", "probes", "thumbnails", "renditions", "status", "videos"} <= names
    assert rows == len(ids)


def test_every_clip_is_ready_and_the_picture_is_refused(run: Run) -> None:
    assert {clip: v.status for clip, v in run.videos.items()} == dict.fromkeys(EXPECT, "ready")
    assert (run.refused.status, run.refused.reason) == (
        415, "not a video: an image (PNG), not a video")
    for clip, video in run.videos.items():
        assert video.title == f"{clip} <b>clip</b>"
        assert set(video.stages) == {"probe", "thumbnail", "transcode"}
        assert all(timing.ok for timing in video.stages.values())


def test_renditions_have_their_size_duration_audio_index_and_bitrate(run: Run) -> None:
    for clip, (ladder, audio, rotation) in EXPECT.items():
        video = run.videos[clip]
        meta = video.metadata
        assert meta is not None and (meta.has_audio, meta.rotation) == (audio, rotation)
        assert [(r.name, r.width, r.height) for r in video.renditions] == ladder
        rates: list[float] = []
        for rendition in video.renditions:
            data = run.site.files.read_bytes(rendition.ref)
            assert len(data) == rendition.ref.size == run.site.files.stat(rendition.ref).size
            with tempfile.NamedTemporaryFile(suffix=".mp4") as local:
                local.write(data)
                local.flush()
                kinds = [box.type for box in read_boxes(local.name)]
                # the index first: ftyp, moov and the global sidx before any media data
                assert kinds[:2] == ["ftyp", "moov"]
                assert kinds.index("sidx") < kinds.index("mdat")
                with av.open(local.name) as container:
                    v = container.streams.video[0]
                    assert (v.codec_context.name, v.width, v.height) == (
                        "h264", rendition.width, rendition.height)
                    assert (len(container.streams.audio) == 1) == audio
                    duration = float(container.duration or 0) / av.time_base
                    frames = sum(1 for _ in container.decode(video=0))
            assert duration == pytest.approx(meta.duration_s, abs=0.1)
            assert frames == round(meta.duration_s * FPS)  # every frame decodes
            assert rendition.has_audio == audio
            # the bitrate band: under the rung's cap (x264's maxrate, 1.5 x its video target,
            # plus the audio), and what the catalog reports is what the file holds
            rung = RUNGS[rendition.name]
            cap = rung.video_bitrate * 3 // 2 + (rung.audio_bitrate if audio else 0)
            measured = len(data) * 8 / duration
            assert 20_000 < measured <= cap, (clip, rendition.name, measured)
            assert rendition.bitrate == pytest.approx(measured, rel=0.15)
            rates.append(measured)
        # each rung up the ladder spends more bits on the same picture
        assert rates == sorted(rates) and len(set(rates)) == len(rates)


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_thumbnails_and_poster_are_valid_distinct_jpegs(run: Run) -> None:
    for clip, video in run.videos.items():
        assert len(video.thumbnails) == 3 and video.poster is not None
        images = []
        for ref in [*video.thumbnails, video.poster]:
            data = run.site.files.read_bytes(ref)
            image = Image.open(io.BytesIO(data))
            assert image.format == "JPEG"
            image.load()
            images.append(image.convert("RGB"))
        meta = video.metadata
        assert meta is not None
        stills = images[:3]
        # upright, the displayed aspect ratio, never upscaled
        for still in stills:
            assert still.width <= meta.width
            assert still.width / still.height == pytest.approx(meta.width / meta.height,
                                                               rel=0.03)
        assert min(_difference(a, b) for i, a in enumerate(stills)
                   for b in stills[i + 1:]) > 2.0, clip


def test_the_status_api_and_ranged_media_answer_from_the_platform(run: Run) -> None:
    vid = run.ids["portrait"]
    status, _, body = _get(run, f"/api/videos/{vid}")
    doc = json.loads(body)
    assert (status, doc["status"], doc["title"]) == (200, "ready", "portrait <b>clip</b>")
    assert {stage: p["fraction"] for stage, p in doc["progress"].items()} == {
        "probe": 1.0, "thumbnail": 1.0, "transcode": 1.0}
    assert [r["name"] for r in doc["renditions"]] == ["240p", "360p"]
    rendition = run.videos["portrait"].renditions[1]
    status, headers, body = _get(run, f"/media/{vid}/360p.mp4", {"Range": "bytes=100-1099"})
    assert (status, len(body), headers["Content-Range"]) == (
        206, 1000, f"bytes 100-1099/{rendition.ref.size}")
    assert body == run.site.files.read_bytes(rendition.ref)[100:1100]
    status, _, page = _get(run, "/")
    assert status == 200 and b"portrait &lt;b&gt;clip&lt;/b&gt;" in page


def test_exactly_one_final_record_per_video(run: Run) -> None:
    with millstream.open_streams(run.site.config.streams) as streams:
        videos = [Video.model_validate_json(r.value)
                  for r in read_to_end(streams, "videos", timeout_s=60)]
    finals: dict[str, int] = {}
    for video in videos:
        if video.status != "processing":
            finals[video.video_id] = finals.get(video.video_id, 0) + 1
    assert finals == dict.fromkeys(run.ids.values(), 1)
    # `processing` is written when the upload reaches the join before the video's other parts
    # are all in; on Kafka the join may read the stages' outputs first (separate streams, no
    # order between them), and then the upload finishes the video at once. So: at most one
    # `processing` per video, only for uploaded videos, and never after its final record
    # (records of one video share a key, hence a partition, hence their order).
    in_progress: dict[str, int] = {}
    finished: set[str] = set()
    for video in videos:
        if video.status == "processing":
            assert video.video_id not in finished, video
            in_progress[video.video_id] = in_progress.get(video.video_id, 0) + 1
        else:
            finished.add(video.video_id)
    assert set(in_progress) <= set(run.ids.values())
    assert set(in_progress.values()) <= {1}


def test_analytics_sees_every_video(run: Run) -> None:
    assert analytics_db_url().split(":")[0] == (
        "sqlite" if run.platform == "embedded" else "postgresql")
    deadline = time.monotonic() + 30
    while True:
        with AnalyticsDB(analytics_db_url()) as db:
            rows = db.query("SELECT video_id, status, renditions, has_audio FROM videos "
                            "ORDER BY video_id")
        if len(rows) == len(EXPECT) and all(row[1] == "ready" for row in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    expected: list[tuple[Any, ...]] = sorted(
        (run.ids[clip], "ready", len(ladder), int(audio))
        for clip, (ladder, audio, _) in EXPECT.items())
    assert rows == expected



def test_views_sent_through_the_api_are_trending_with_their_titles(run: Run) -> None:
    """The demo's viewers play the clips (2, 1, 0 times); view-titles (a stream–table join
    with the catalog) and views-hourly (hopping windows) count them, and the gallery's
    "Trending now" row shows exactly that, on this platform."""
    assert run.site.url is not None
    played = [run.videos[clip] for clip in EXPECT]
    sent = watch(run.site.url, played, plan=(2, 1))
    assert sent == {played[0].video_id: 2, played[1].video_id: 1}
    found = wait_counted(run.site.tables, sent, timeout=60.0)
    assert [(t.video_id, t.views, t.title) for t in found] == [
        (played[0].video_id, 2, played[0].title), (played[1].video_id, 1, played[1].title)]
    _, _, body = _get(run, "/")
    html = body.decode()
    assert re.findall(r'data-trending-id="(\w+)" data-views="(\d+)"', html) == [
        (played[0].video_id, "2"), (played[1].video_id, "1")]
