"""Flat SQL tables an analyst can query, fed from the ``videos`` stream.

``AnalyticsDB`` keeps a SQLite file with one row per video (``videos``), one per video and
stage (``stage_times``) and one per metrics record of the app's services
(``service_metrics``, from ``millstream.metrics``), and views over them: ``videos_per_day``,
``failures_by_reason``, ``stage_seconds`` and ``processing_by_service``. Every write is an
upsert keyed by the video (and stage), or by the metrics record's position, so records read
again after a crash, or a replay from the beginning, change nothing. ::

    sqlite3 .millstream/analytics.db 'SELECT * FROM failures_by_reason'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from .models import Video

__all__ = ["SCHEMA", "AnalyticsDB"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    video_id     TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT,
    failed_stage TEXT,
    error_kind   TEXT,
    duration_s   REAL,
    width        INTEGER,
    height       INTEGER,
    has_audio    INTEGER,
    renditions   INTEGER NOT NULL,
    uploaded_at  REAL NOT NULL,
    ready_at     REAL,
    finished_at  REAL,
    day          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_times (
    video_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    seconds     REAL NOT NULL,
    ok          INTEGER NOT NULL,
    PRIMARY KEY (video_id, stage)
);
CREATE TABLE IF NOT EXISTS service_metrics (
    position    TEXT PRIMARY KEY,  -- partition/offset of the metrics record
    service     TEXT NOT NULL,
    grp         TEXT NOT NULL,
    instance    TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    records_in  INTEGER NOT NULL,
    records_out INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    exceptions  INTEGER NOT NULL,
    processed   INTEGER NOT NULL,
    mean_ms     REAL,
    p50_ms      REAL,
    p99_ms      REAL,
    max_ms      REAL,
    final       INTEGER NOT NULL
);
CREATE VIEW IF NOT EXISTS processing_by_service AS
    SELECT service, SUM(records_in) AS records_in, SUM(errors) AS errors,
           SUM(exceptions) AS exceptions,
           SUM(mean_ms * processed) / NULLIF(SUM(processed), 0) AS mean_ms,
           MAX(max_ms) AS max_ms
    FROM service_metrics GROUP BY service;
CREATE VIEW IF NOT EXISTS videos_per_day AS
    SELECT day, COUNT(*) AS uploaded,
           SUM(status = 'ready') AS ready, SUM(status = 'failed') AS failed,
           SUM(status = 'processing') AS processing
    FROM videos GROUP BY day;
CREATE VIEW IF NOT EXISTS failures_by_reason AS
    SELECT error_kind, failed_stage, reason, COUNT(*) AS videos
    FROM videos WHERE status = 'failed' GROUP BY error_kind, failed_stage, reason;
CREATE VIEW IF NOT EXISTS stage_seconds AS
    SELECT stage, COUNT(*) AS videos, AVG(seconds) AS avg_s, MAX(seconds) AS max_s,
           SUM(NOT ok) AS failed
    FROM stage_times GROUP BY stage;
"""

_UPSERT_VIDEO = """
INSERT INTO videos (video_id, title, status, reason, failed_stage, error_kind, duration_s,
                    width, height, has_audio, renditions, uploaded_at, ready_at, finished_at,
                    day)
VALUES (:video_id, :title, :status, :reason, :failed_stage, :error_kind, :duration_s,
        :width, :height, :has_audio, :renditions, :uploaded_at, :ready_at, :finished_at, :day)
ON CONFLICT (video_id) DO UPDATE SET
    title = excluded.title, status = excluded.status, reason = excluded.reason,
    failed_stage = excluded.failed_stage, error_kind = excluded.error_kind,
    duration_s = excluded.duration_s, width = excluded.width, height = excluded.height,
    has_audio = excluded.has_audio, renditions = excluded.renditions,
    uploaded_at = excluded.uploaded_at, ready_at = excluded.ready_at,
    finished_at = excluded.finished_at, day = excluded.day
"""

_UPSERT_STAGE = """
INSERT INTO stage_times (video_id, stage, started_at, finished_at, seconds, ok)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (video_id, stage) DO UPDATE SET
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    seconds = excluded.seconds, ok = excluded.ok
"""


_UPSERT_METRICS = """
INSERT OR REPLACE INTO service_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


class AnalyticsDB:
    """The analytics SQLite file, opened (and its schema created) on construction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def record(self, video: Video) -> None:
        """Upsert ``video`` and its stage times, in one transaction."""
        meta = video.metadata
        row = {
            "video_id": video.video_id, "title": video.title, "status": video.status,
            "reason": video.reason, "failed_stage": video.failed_stage,
            "error_kind": video.error_kind,
            "duration_s": meta.duration_s if meta else None,
            "width": meta.width if meta else None, "height": meta.height if meta else None,
            "has_audio": int(meta.has_audio) if meta else None,
            "renditions": len(video.renditions), "uploaded_at": video.uploaded_at,
            "ready_at": video.finished_at if video.status == "ready" else None,
            "finished_at": video.finished_at,
            "day": datetime.fromtimestamp(video.uploaded_at, UTC).date().isoformat(),
        }
        with self._db:
            self._db.execute(_UPSERT_VIDEO, row)
            self._db.executemany(_UPSERT_STAGE, [
                (video.video_id, stage, t.started_at, t.finished_at, t.seconds, int(t.ok))
                for stage, t in video.stages.items()])

    def record_metrics(self, position: str, doc: Mapping[str, Any]) -> None:
        """Upsert one ``millstream.metrics`` document (a service's) found at ``position``."""
        interval = doc.get("interval") or {}
        timing = doc.get("processing") or {}
        row = (position, doc["service"], doc["group"], str(doc["instance"]), doc["time_ms"],
               doc.get("interval_ms", 0), interval.get("in", 0), interval.get("out", 0),
               interval.get("errors", 0), interval.get("exceptions", 0),
               timing.get("count", 0), timing.get("mean_ms"), timing.get("p50_ms"),
               timing.get("p99_ms"), timing.get("max_ms"), int(bool(doc.get("final"))))
        with self._db:
            self._db.execute(_UPSERT_METRICS, row)

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of a read query (for tests and tools)."""
        return list(self._db.execute(sql, params))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AnalyticsDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
