"""Flat SQL tables an analyst can query, fed from the ``videos`` stream: in SQLite by default,
in PostgreSQL at scale.

``AnalyticsDB`` keeps one row per video (``videos``), one per video and stage
(``stage_times``) and one per metrics record of the app's services (``service_metrics``, from
``millstream.metrics``), and views over them: ``videos_per_day``, ``failures_by_reason``,
``stage_seconds`` and ``processing_by_service``. Every write is an upsert keyed by the video
(and stage), or by the metrics record's position, so records read again after a crash, or a
replay from the beginning, change nothing.

Where: a SQLite file (a path, or ``sqlite:///absolute/path.db``) or a PostgreSQL database
(``postgresql://user@host:port/database``, psycopg 3: ``pip install 'millstream[postgres]'``).
The SQL is written once for both — portable types, ``CASE`` sums, ``ON CONFLICT ... DO
UPDATE`` — so the same records give the same answers, value for value::

    sqlite3 .millstream/analytics.db 'SELECT * FROM failures_by_reason'
    psql postgresql://analyst@db/videos -c 'SELECT * FROM failures_by_reason'
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from millstream.errors import ConfigError, MissingDependencyError, UnavailableError
from millstream.runtime import MetricsRecord

from .models import Video

if TYPE_CHECKING:
    import psycopg

__all__ = ["TABLES", "VIEWS", "AnalyticsDB"]

#: the tables, created unless they exist
TABLES = (
    """CREATE TABLE IF NOT EXISTS videos (
    video_id     TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT,
    failed_stage TEXT,
    error_kind   TEXT,
    duration_s   DOUBLE PRECISION,
    width        INTEGER,
    height       INTEGER,
    has_audio    INTEGER,
    renditions   INTEGER NOT NULL,
    uploaded_at  DOUBLE PRECISION NOT NULL,
    ready_at     DOUBLE PRECISION,
    finished_at  DOUBLE PRECISION,
    day          TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS stage_times (
    video_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    seconds     DOUBLE PRECISION NOT NULL,
    ok          INTEGER NOT NULL,
    PRIMARY KEY (video_id, stage)
)""",
    """CREATE TABLE IF NOT EXISTS service_metrics (
    position    TEXT PRIMARY KEY,  -- partition/offset of the metrics record
    service     TEXT NOT NULL,
    grp         TEXT NOT NULL,
    instance    TEXT NOT NULL,
    time_ms     BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    records_in  INTEGER NOT NULL,
    records_out INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    exceptions  INTEGER NOT NULL,
    processed   INTEGER NOT NULL,
    mean_ms     DOUBLE PRECISION,
    p50_ms      DOUBLE PRECISION,
    p99_ms      DOUBLE PRECISION,
    max_ms      DOUBLE PRECISION,
    final       INTEGER NOT NULL
)""",
)

#: the views by name, (re)created whenever the database is opened, so they are always
#: today's definitions. Sums of INTEGER columns are BIGINT in PostgreSQL (an int in Python,
#: as in SQLite); booleans are INTEGER 0/1 in both.
VIEWS = {
    "processing_by_service": """
    SELECT service, SUM(records_in) AS records_in, SUM(errors) AS errors,
           SUM(exceptions) AS exceptions,
           SUM(mean_ms * processed) / NULLIF(SUM(processed), 0) AS mean_ms,
           MAX(max_ms) AS max_ms
    FROM service_metrics GROUP BY service""",
    "videos_per_day": """
    SELECT day, COUNT(*) AS uploaded,
           SUM(CASE WHEN status = 'ready' THEN 1 ELSE 0 END) AS ready,
           SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
           SUM(CASE WHEN status = 'processing' THEN 1 ELSE 0 END) AS processing
    FROM videos GROUP BY day""",
    "failures_by_reason": """
    SELECT error_kind, failed_stage, reason, COUNT(*) AS videos
    FROM videos WHERE status = 'failed' GROUP BY error_kind, failed_stage, reason""",
    "stage_seconds": """
    SELECT stage, COUNT(*) AS videos, AVG(seconds) AS avg_s, MAX(seconds) AS max_s,
           SUM(CASE WHEN ok = 0 THEN 1 ELSE 0 END) AS failed
    FROM stage_times GROUP BY stage""",
}

_VIDEO_COLUMNS = ("video_id", "title", "status", "reason", "failed_stage", "error_kind",
                  "duration_s", "width", "height", "has_audio", "renditions", "uploaded_at",
                  "ready_at", "finished_at", "day")
_STAGE_COLUMNS = ("video_id", "stage", "started_at", "finished_at", "seconds", "ok")
_METRICS_COLUMNS = ("position", "service", "grp", "instance", "time_ms", "interval_ms",
                    "records_in", "records_out", "errors", "exceptions", "processed",
                    "mean_ms", "p50_ms", "p99_ms", "max_ms", "final")


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` with ``:name`` parameters (SQLite ≥ 3.24
    and PostgreSQL both read it)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


_UPSERT_VIDEO = _upsert("videos", _VIDEO_COLUMNS, ("video_id",))
_UPSERT_STAGE = _upsert("stage_times", _STAGE_COLUMNS, ("video_id", "stage"))
_UPSERT_METRICS = _upsert("service_metrics", _METRICS_COLUMNS, ("position",))

Params = Sequence[object] | Mapping[str, object]


class _Connection(Protocol):
    """One database session; SQL with ``?`` or ``:name`` parameters."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def create(self, tables: Sequence[str], views: Mapping[str, str]) -> None:
        """Create ``tables`` unless they exist and (re)create ``views`` (name -> SELECT), in
        one transaction, one session at a time."""

    def execute(self, sql: str, params: Params = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def rows(self, sql: str, params: Params = ()) -> list[tuple[object, ...]]: ...

    def close(self) -> None: ...


class _Sqlite:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db:
            yield

    def create(self, tables: Sequence[str], views: Mapping[str, str]) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # the file's write lock: one creator at a time
        try:
            for statement in tables:
                self._db.execute(statement)
            for name, select in views.items():  # SQLite has no CREATE OR REPLACE VIEW
                self._db.execute(f"DROP VIEW IF EXISTS {name}")
                self._db.execute(f"CREATE VIEW {name} AS {select}")
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def execute(self, sql: str, params: Params = ()) -> None:
        self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._db.executemany(sql, rows)

    def rows(self, sql: str, params: Params = ()) -> list[tuple[object, ...]]:
        return list(self._db.execute(sql, params))

    def close(self) -> None:
        self._db.close()


# a quoted string or identifier (left alone but for %), a cast, a parameter, or a percent sign
_SQL_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|::|:[A-Za-z_]\w*|\?|%""")


def _pyformat(sql: str) -> str:
    """SQL with ``?`` and ``:name`` parameters in psycopg's style (``%s``, ``%(name)s``)."""

    def swap(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] in "'\"" or token == "%":
            return token.replace("%", "%%")
        if token == "::":
            return token
        if token == "?":
            return "%s"
        return f"%({token[1:]})s"

    return _SQL_TOKENS.sub(swap, sql)


class _Postgres:
    """A psycopg connection in autocommit mode, reopened when the server dropped it (the
    handler's retry then succeeds); transactions are explicit."""

    _SCHEMA_LOCK = 0x76696473  # advisory lock: one session creates the schema at a time

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependencyError("analytics in PostgreSQL", "postgres") from exc
        self._psycopg = psycopg
        self._url = url
        self._closed = False
        self._db = self._connect()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as exc:
            where = self._url.rsplit("@", 1)[-1]  # never the password
            raise UnavailableError(f"PostgreSQL at {where}: {exc}") from exc

    def _session(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._db.closed and not self._closed:
            self._db = self._connect()
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._session().transaction():
            yield

    def create(self, tables: Sequence[str], views: Mapping[str, str]) -> None:
        with self.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._SCHEMA_LOCK,))
            for statement in tables:
                self._db.execute(statement.encode())
            for name, select in views.items():  # keeps views analysts built on these
                self._db.execute(f"CREATE OR REPLACE VIEW {name} AS {select}".encode())

    def execute(self, sql: str, params: Params = ()) -> None:
        self._session().execute(_pyformat(sql).encode(), params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self._session().cursor() as cur:
            cur.executemany(_pyformat(sql).encode(), rows)

    def rows(self, sql: str, params: Params = ()) -> list[tuple[object, ...]]:
        return list(self._session().execute(_pyformat(sql).encode(), params).fetchall())

    def close(self) -> None:
        self._closed = True
        self._db.close()


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _open(target: str | Path) -> _Connection:
    if isinstance(target, Path) or "://" not in target:
        return _Sqlite(Path(target))
    parts = urlsplit(target)
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConfigError(f"analytics URL {target!r} names no file; use "
                              "sqlite:///absolute/path/analytics.db")
        return _Sqlite(Path(parts.path))
    if parts.scheme in ("postgresql", "postgres"):
        return _Postgres(target)
    raise ConfigError(f"analytics URL {_redacted(target)!r} has scheme {parts.scheme!r}; "
                      "supported: a "
                      "path, sqlite:///path/to/analytics.db, postgresql://user@host:port/db")


class AnalyticsDB:
    """The analytics database at ``target`` (see the module docstring), opened — and its
    schema created — on construction."""

    def __init__(self, target: str | Path) -> None:
        self.target = target
        self._db = _open(target)
        try:
            self._db.create(TABLES, VIEWS)
        except BaseException:
            self._db.close()
            raise

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
        stages = [{"video_id": video.video_id, "stage": stage, "started_at": t.started_at,
                   "finished_at": t.finished_at, "seconds": t.seconds, "ok": int(t.ok)}
                  for stage, t in video.stages.items()]
        with self._db.transaction():
            self._db.execute(_UPSERT_VIDEO, row)
            if stages:
                self._db.executemany(_UPSERT_STAGE, stages)

    def record_metrics(self, position: str, record: MetricsRecord) -> None:
        """Upsert one service's ``millstream.metrics`` record, found at ``position``. An
        interval that timed no record has no times (NULL), not times of 0."""
        interval, timing = record.interval, record.processing
        timed = timing.count > 0
        values = (position, record.service, record.group, record.instance, record.time_ms,
                  record.interval_ms, interval.records_in, interval.records_out,
                  interval.errors, interval.exceptions, timing.count,
                  timing.mean_ms if timed else None, timing.p50_ms if timed else None,
                  timing.p99_ms if timed else None, timing.max_ms if timed else None,
                  int(record.final))
        with self._db.transaction():
            self._db.execute(_UPSERT_METRICS, dict(zip(_METRICS_COLUMNS, values, strict=True)))

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of a read query, ``?`` marking its parameters (for tests and tools)."""
        return self._db.rows(sql, params)

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._db.close()

    def __enter__(self) -> AnalyticsDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
