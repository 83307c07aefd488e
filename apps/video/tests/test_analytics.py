"""The analytics tables on SQLite and on a real PostgreSQL: the same records give the same
answers from every view, value for value and type for type; the service writes wherever
``VIDEOSITE_ANALYTICS_DB`` points."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from millstream import ConfigError
from millstream.files import FileRef
from millstream.runtime import METRICS_STREAM, Counters, MetricsRecord, ProcessingSummary
from millstream.testing import TestPlatform
from videosite.analytics import AnalyticsDB
from videosite.app import app
from videosite.config import analytics_db_url
from videosite.models import StageTiming, Video, VideoMetadata

REF = FileRef(url="file:///x/source.mp4", size=10, sha256="0" * 64)
DAY1 = datetime(2025, 6, 15, 8, tzinfo=UTC).timestamp()
DAY = 86_400.0
#: seconds each stage took in a ready video (exact in binary, so sums agree to the bit)
READY_SECONDS = {"probe": 0.5, "thumbnail": 1.25, "transcode": 4.0}


def metadata(width: int, height: int, audio: bool) -> VideoMetadata:
    return VideoMetadata(container="mp4", duration_s=2.0, video_codec="h264", width=width,
                         height=height, stored_width=width, stored_height=height, fps=25.0,
                         bit_rate=None, rotation=0, has_audio=audio,
                         audio_codec="aac" if audio else None,
                         audio_channels=2 if audio else None,
                         audio_sample_rate=48_000 if audio else None, size_bytes=10,
                         frame_count=50)


def ready(video_id: str, uploaded_at: float, width: int, height: int, audio: bool) -> Video:
    stages = {s: StageTiming(started_at=uploaded_at, finished_at=uploaded_at + took, ok=True)
              for s, took in READY_SECONDS.items()}
    return Video(video_id=video_id, title=f"t-{video_id}", status="ready", source=REF,
                 uploaded_at=uploaded_at, finished_at=uploaded_at + 4.0, stages=stages,
                 metadata=metadata(width, height, audio))


def failed(video_id: str, uploaded_at: float, kind: Any, reason: str) -> Video:
    stages = {s: StageTiming(started_at=uploaded_at, finished_at=uploaded_at + 0.25, ok=False)
              for s in READY_SECONDS}
    return Video(video_id=video_id, title=f"t-{video_id}", status="failed", source=REF,
                 uploaded_at=uploaded_at, finished_at=uploaded_at + 0.25, stages=stages,
                 failed_stage="probe", error_kind=kind, reason=reason)


def processing(video_id: str, uploaded_at: float) -> Video:
    return Video(video_id=video_id, title=f"t-{video_id}", status="processing", source=REF,
                 uploaded_at=uploaded_at)


def metrics(service: str, records_in: int, errors: int, count: int, mean_ms: float,
            max_ms: float) -> MetricsRecord:
    """A service's metrics record; one that timed no record (``count`` 0) has no times."""
    return MetricsRecord(
        app="videosite", service=service, group=f"videosite.{service}", instance="h:1",
        time_ms=1_750_000_000_000, interval_ms=5_000,
        interval=Counters(records_in=records_in, records_out=records_in, errors=errors,
                          exceptions=errors),
        processing=ProcessingSummary(count=count, mean_ms=mean_ms, p50_ms=mean_ms,
                                     p99_ms=max_ms, max_ms=max_ms))


def fill(db: AnalyticsDB) -> None:
    """Five videos over three days (one recorded twice, as processing and then ready) and
    four metrics records (one read twice, as after a replay)."""
    db.record(processing("a", DAY1))
    for video in (ready("a", DAY1, 320, 240, True), ready("b", DAY1 + 3600, 240, 320, False),
                  failed("c", DAY1 + DAY, "rejected", "rejected: too long"),
                  failed("d", DAY1 + DAY + 60, "not_a_video", "not a video: PNG"),
                  processing("e", DAY1 + 2 * DAY)):
        db.record(video)
    db.record_metrics("0/1", metrics("transcode", 3, 1, 3, 10.0, 20.0))
    db.record_metrics("0/2", metrics("transcode", 2, 0, 1, 30.0, 30.0))
    db.record_metrics("0/3", metrics("join", 7, 0, 7, 2.0, 3.0))
    db.record_metrics("0/4", metrics("catalog", 0, 0, 0, 0.0, 0.0))
    db.record_metrics("0/1", metrics("transcode", 3, 1, 3, 10.0, 20.0))


#: every view, ordered, with the answers the records of ``fill`` give
EXPECTED = {
    "SELECT day, uploaded, ready, failed, processing FROM videos_per_day ORDER BY day": [
        ("2025-06-15", 2, 2, 0, 0), ("2025-06-16", 2, 0, 2, 0), ("2025-06-17", 1, 0, 0, 1)],
    "SELECT error_kind, failed_stage, reason, videos FROM failures_by_reason "
    "ORDER BY error_kind": [("not_a_video", "probe", "not a video: PNG", 1),
                           ("rejected", "probe", "rejected: too long", 1)],
    "SELECT stage, videos, avg_s, max_s, failed FROM stage_seconds ORDER BY stage": [
        ("probe", 4, 0.375, 0.5, 2), ("thumbnail", 4, 0.75, 1.25, 2),
        ("transcode", 4, 2.125, 4.0, 2)],
    "SELECT service, records_in, errors, exceptions, mean_ms, max_ms "
    "FROM processing_by_service ORDER BY service": [
        ("catalog", 0, 0, 0, None, None), ("join", 7, 0, 0, 2.0, 3.0),
        ("transcode", 5, 1, 1, 15.0, 30.0)],
    "SELECT video_id, status, width, height, has_audio, duration_s, renditions, ready_at "
    "FROM videos ORDER BY video_id": [
        ("a", "ready", 320, 240, 1, 2.0, 0, DAY1 + 4.0),
        ("b", "ready", 240, 320, 0, 2.0, 0, DAY1 + 3600 + 4.0),
        ("c", "failed", None, None, None, None, 0, None),
        ("d", "failed", None, None, None, None, 0, None),
        ("e", "processing", None, None, None, None, 0, None)],
}


def typed(rows: list[tuple[object, ...]]) -> list[tuple[tuple[str, object], ...]]:
    """Rows with each value's type, so 2 and 2.0 (or 1 and True) do not pass for each other."""
    return [tuple((type(v).__name__, v) for v in row) for row in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where an AnalyticsDB lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "analytics.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def db(target: str) -> Iterator[AnalyticsDB]:
    with AnalyticsDB(target) as opened:
        yield opened


@pytest.mark.parametrize("sql", list(EXPECTED))
def test_every_view_gives_the_expected_answers(db: AnalyticsDB, sql: str) -> None:
    fill(db)
    assert typed(db.query(sql)) == typed(EXPECTED[sql])


def test_a_second_fill_and_a_reopen_change_nothing(db: AnalyticsDB, target: str) -> None:
    fill(db)
    fill(db)
    with AnalyticsDB(target) as again:  # the schema is created again, the rows stay
        for sql, rows in EXPECTED.items():
            assert typed(again.query(sql)) == typed(rows)
        assert again.query("SELECT COUNT(*) FROM stage_times") == [(12,)]
        assert again.query("SELECT COUNT(*) FROM service_metrics") == [(4,)]


def test_query_parameters_are_question_marks_and_literals_are_left_alone(
        db: AnalyticsDB) -> None:
    fill(db)
    assert db.query("SELECT video_id, title FROM videos WHERE status = ? AND title LIKE "
                    "'t-%' AND reason <> 'why? :no' ORDER BY video_id", "failed") == [
        ("c", "t-c"), ("d", "t-d")]
    assert db.query("SELECT COUNT(*) FROM videos WHERE day = ? OR video_id = ?",
                    "2025-06-17", "a") == [(2,)]


#: a metrics record as the runtime wrote it before the record had a format number, and one
#: older still (no run id, no since-start processing), and one of another app's service
WRITTEN_BEFORE = [
    {"kind": "service", "app": "videosite", "service": "probe", "group": "videosite.probe",
     "instance": "host-a:41", "run": "0a1b2c3d4e5f", "version": "1",
     "time_ms": 1_750_000_005_000, "started_ms": 1_750_000_000_000, "interval_ms": 5000,
     "totals": {"in": 12, "out": 11, "errors": 2, "retries": 1, "exceptions": 1},
     "interval": {"in": 4, "out": 3, "errors": 1, "retries": 1, "exceptions": 1},
     "processing": {"count": 4, "mean_ms": 2.5, "p50_ms": 2.0, "p90_ms": 4.0, "p99_ms": 4.0,
                    "max_ms": 4.0},
     "histogram": {"buckets": {"62": 2, "95": 2}, "count": 4, "total_us": 10000,
                   "max_us": 4000},
     "processing_total": {"count": 12, "total_us": 30000},
     "lag": {"uploads/0": 3}, "assigned": ["uploads/0"], "final": False},
    {"kind": "service", "app": "videosite", "service": "join", "group": "videosite.join",
     "instance": "host-b:7", "version": "1", "time_ms": 1_750_000_010_000,
     "started_ms": 1_750_000_000_000, "interval_ms": 10_000,
     "totals": {"in": 6, "out": 2, "errors": 0, "retries": 0, "exceptions": 0},
     "interval": {"in": 6, "out": 2, "errors": 0, "retries": 0, "exceptions": 0},
     "processing": {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0,
                    "max_ms": 0.0},
     "histogram": {"buckets": {}, "count": 0, "total_us": 0, "max_us": 0},
     "lag": {}, "assigned": [], "final": True},
    {"kind": "service", "app": "shop", "service": "billing", "group": "shop.billing",
     "instance": "host-c:9", "time_ms": 1_750_000_010_000},
]


def test_the_analytics_service_writes_where_the_environment_says(
        target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSITE_ANALYTICS_DB", target)
    videos = [ready("a", DAY1, 320, 240, True), failed("c", DAY1, "rejected", "too long")]
    older = ("host-a:41", "host-b:7", "host-c:9")
    rows_of_older = ("SELECT service, grp, instance, time_ms, interval_ms, records_in, "
                     "records_out, errors, exceptions, processed, mean_ms, p50_ms, p99_ms, "
                     f"max_ms, final FROM service_metrics WHERE instance IN {older} "
                     "ORDER BY instance")
    with TestPlatform(app) as platform, AnalyticsDB(target) as db:
        for video in videos:
            platform.send("videos", video, key=video.video_id)
        with platform.streams.open_producer() as producer:  # as the runtime wrote them
            for written in WRITTEN_BEFORE:
                producer.send(METRICS_STREAM, json.dumps(written).encode(),
                              key=str(written["group"]).encode())
        with platform.running("analytics"):  # it also reads millstream.metrics: never idle
            platform.wait_until(lambda: db.query("SELECT COUNT(*) FROM videos") == [(2,)]
                                and len(db.query(rows_of_older)) == 2,
                                timeout=20, message="both videos and both older metrics "
                                                    "records in the analytics tables")
        assert db.query("SELECT video_id, status, reason FROM videos ORDER BY video_id") == [
            ("a", "ready", None), ("c", "failed", "too long")]
        assert db.query("SELECT day, uploaded, ready, failed FROM videos_per_day") == [
            ("2025-06-15", 2, 1, 1)]
        # another app's record is left out; an interval that timed nothing has no times
        assert typed(db.query(rows_of_older)) == typed([
            ("probe", "videosite.probe", "host-a:41", 1_750_000_005_000, 5000, 4, 3, 1, 1, 4,
             2.5, 2.0, 4.0, 4.0, 0),
            ("join", "videosite.join", "host-b:7", 1_750_000_010_000, 10_000, 6, 2, 0, 0, 0,
             None, None, None, None, 1)])
        assert platform.exceptions("analytics") == []


def test_the_environment_names_a_file_or_a_url(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert analytics_db_url({"MILLSTREAM_HOME": home}) == f"sqlite://{home}/analytics.db"
    assert analytics_db_url({"VIDEOSITE_ANALYTICS_DB": str(tmp_path / "a.db")}) == \
        f"sqlite://{tmp_path}/a.db"
    pg = "postgresql://analyst@db:5432/videos"
    assert analytics_db_url({"VIDEOSITE_ANALYTICS_DB": pg}) == pg
    url = analytics_db_url({"VIDEOSITE_ANALYTICS_DB": str(tmp_path / "b.db")})
    with AnalyticsDB(url) as db:
        db.record(processing("x", DAY1))
    with AnalyticsDB(tmp_path / "b.db") as db:  # the URL named that file
        assert db.query("SELECT video_id FROM videos") == [("x",)]


@pytest.mark.parametrize("url", ["mysql://db/analytics", "sqlite://", "sqlite:///"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="analytics URL"):
        AnalyticsDB(url)


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        AnalyticsDB("mysql://analyst:s3cret@db:3306/analytics")
    assert "s3cret" not in str(refused.value)
    assert "'mysql://analyst:***@db:3306/analytics'" in str(refused.value)
