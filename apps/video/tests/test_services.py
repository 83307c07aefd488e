"""The app's services as the runtime runs them: whatever a service opens — by its
``lifespan``, or the runtime's producer for ``emit_now`` — is closed when it stops, and
a shadow transcoder's live progress goes to its own status stream, never to production's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from millstream import open_streams
from millstream.runtime import ServiceRunner
from millstream.streams._base import Streams
from millstream.testing import TestPlatform
from videosite.analytics import AnalyticsDB
from videosite.app import app
from videosite.models import Progress, Video
from videosite.pipeline import submit
from videosite_testing import Idle

STAGES = ("probe", "thumbnail", "transcode", "join", "analytics")


class _Tracked:
    """A producer or consumer that notes when it is closed."""

    def __init__(self, inner: Any, what: str) -> None:
        self._inner = inner
        self.what = what
        self.closed = False

    def close(self, *args: Any) -> None:
        self.closed = True
        self._inner.close(*args)

    def __enter__(self) -> _Tracked:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingStreams:
    """Streams that remember every producer and consumer opened through them."""

    def __init__(self, inner: Streams) -> None:
        self._inner = inner
        self.opened: list[_Tracked] = []

    def open_producer(self) -> _Tracked:
        return self._track(self._inner.open_producer(), "producer")

    def open_consumer(self, *args: Any, **kwargs: Any) -> _Tracked:
        return self._track(self._inner.open_consumer(*args, **kwargs), "consumer")

    def _track(self, inner: Any, what: str) -> _Tracked:
        tracked = _Tracked(inner, what)
        self.opened.append(tracked)
        return tracked

    def still_open(self) -> list[str]:
        return [t.what for t in self.opened if not t.closed]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("service", ["transcode", "join", "analytics"])
def test_a_service_closes_what_it_opened_when_it_stops(
        service: str, clips: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "analytics.db"
    monkeypatch.setenv("VIDEOSITE_ANALYTICS_DB", str(db_path))
    with TestPlatform(app) as platform:
        video_id = submit(platform.streams, platform.files, clips["tiny"], "tiny")
        for stage in STAGES[:STAGES.index(service)]:
            platform.run_until_idle(stage, timeout=60)
        with open_streams(platform.url) as inner:
            streams = CountingStreams(inner)
            runner = ServiceRunner(app, service, streams,  # type: ignore[arg-type]
                                   clock=platform.clock, poll_timeout_s=0.05,
                                   metrics_interval_s=60.0, files=platform.files,
                                   tables=platform.tables)
            runner.run(until=Idle(time.monotonic() + 60))
            # the runner (and so its context) is still alive: nothing may stay open anyway
            assert streams.still_open() == []
            assert len(streams.opened) == (2 if service == "analytics" else 3)
        # what each did while it ran
        if service == "transcode":
            progress = [p for p in platform.values("status") if p.stage == "transcode"]
            assert progress[0].fraction == 0.0 and progress[-1].fraction == 1.0
            assert [r.key for r in platform.records("renditions")] == [video_id.encode()]
        elif service == "join":  # and its table output, the catalog
            [(key, doc)] = platform.tables.table("videos").scan("", limit=10)
            assert (key, Video.model_validate(doc).status) == (video_id, "ready")
        else:
            assert not Path(f"{db_path}-wal").exists()  # SQLite removes it with the last close
            with AnalyticsDB(db_path) as db:
                assert db.query("SELECT video_id, status FROM videos") == [(video_id, "ready")]
        assert runner.statistics().records_in >= 1


def test_a_shadow_transcoder_reports_progress_on_its_own_status_stream(
        clips: dict[str, Path]) -> None:
    with TestPlatform(app) as platform:
        video_id = submit(platform.streams, platform.files, clips["tiny"], "tiny")
        platform.run_until_idle("transcode", shadow="v2", timeout=60)

        assert platform.records("status") == []  # production's streams untouched
        assert platform.records("renditions") == []
        progress: list[Progress] = platform.values("status.shadow.v2")
        assert {(p.video_id, p.stage) for p in progress} == {(video_id, "transcode")}
        assert (progress[0].fraction, progress[0].message) == (0.0, "started")
        fractions = [p.fraction for p in progress]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
        assert [r.key for r in platform.records("renditions.shadow.v2")] == [video_id.encode()]
