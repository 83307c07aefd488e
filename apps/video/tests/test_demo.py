"""The main job (``python -m videosite.demo``) on a fresh embedded platform."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx2
import pytest
from rich.console import Console

from millstream.files import FileRef
from millstream.tables import open_tables
from videosite._viewers import VIEWS_PLAN
from videosite.app import app
from videosite.demo import SAMPLES, SUMMARY_COLUMNS, _row, main, summary
from videosite.inprocess import free_port
from videosite.models import RenditionInfo, Video, VideoMetadata
from videosite.trending import ranked, window_rows


def test_the_demo_processes_every_sample_and_refuses_the_picture(
        capsys: pytest.CaptureFixture[str]) -> None:
    # on the per-test home and working directory the shared fixtures give every test; the
    # demo serves (the site and the console) until told to stop, as until Ctrl-C
    site_port, console_port = free_port(0), free_port(0)
    site, console = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{console_port}"
    stop = threading.Event()
    status: list[int] = []
    demo = threading.Thread(target=lambda: status.append(main(
        ["--timeout", "120", "--port", str(site_port), "--console-port", str(console_port)],
        stop=stop)), name="demo")
    demo.start()
    try:
        out = ""
        deadline = time.monotonic() + 300
        while "serving the site and the console" not in out:
            assert demo.is_alive() and time.monotonic() < deadline, out
            time.sleep(0.2)
            out += capsys.readouterr().out
        lines = [line.strip() for line in out.splitlines()]
        # the summary names both, side by side
        assert f"The site:    {site}/   (API token: demo-token)" in lines
        assert f"The console: {console}/   (the services, live)" in lines
        (said,) = [line for line in lines if "its token (to act)" in line]
        assert re.fullmatch(r"its token \(to act\): [0-9a-f]{24}", said.strip()), said
        # the trending videos as the demo printed them: the views it sent, exactly
        shown = re.findall(r"^\s*(\d)\s+(.+?)\s+(\d+)$", out, re.MULTILINE)
        assert [(int(rank), title, int(count)) for rank, title, count in shown] == [
            (rank, s.title, n)
            for rank, (s, n) in enumerate(zip(SAMPLES, VIEWS_PLAN, strict=True), 1)]
        # the console answers; its overview names every service of the demo once each has
        # reported (metrics every 5 s), every one running, and the audience's views flowing
        # through view-titles and views-hourly
        assert httpx2.get(f"{console}/").status_code == 200
        expected = set(app.services)
        services: dict[str, dict[str, Any]] = {}

        def working() -> bool:
            return (set(services) == expected
                    and all(row["health"] == "running" for row in services.values())
                    and all((services[name]["rate_in"] or 0) > 0
                            for name in ("view-titles", "views-hourly")))

        until = time.monotonic() + 40
        while not working() and time.monotonic() < until:
            answer = httpx2.get(f"{console}/api/overview")
            assert answer.status_code == 200
            services = answer.json()["services"]
            time.sleep(0.5)
        assert set(services) == expected
        assert {name: row["health"] for name, row in services.items()} == dict.fromkeys(
            expected, "running")
        assert working(), services
        # the audience plays a ready video every few seconds while the demo serves: wait
        # until its views are counted on top of the plan's (the views-hourly windows write
        # their rows every second), then stop
        def views_counted() -> int:
            tables = open_tables()
            try:
                return sum(t.views for t in ranked(window_rows(tables), time.time()))
            finally:
                tables.close()

        until = time.monotonic() + 60
        while views_counted() <= sum(VIEWS_PLAN):
            assert time.monotonic() < until, "the audience's views were not counted in 60 s"
            time.sleep(0.5)
        # the site's ops page links to this console
        ops = httpx2.get(f"{site}/ops", headers={"Authorization": "Bearer demo-token"})
        assert f'id="console-link" href="{console}/"' in ops.text
    finally:
        stop.set()
        demo.join(120)
    assert not demo.is_alive() and status == [0]
    tables = open_tables()
    videos = [Video.model_validate(doc) for _, doc in tables.table("videos").scan()]
    # its view events, sent through the HTTP API, counted by the view windows: the plan,
    # and what the audience played while the demo served on top of it
    counted = {t.title: t.views for t in ranked(window_rows(tables), time.time())}
    tables.close()
    assert VIEWS_PLAN == (4, 3, 2, 1)
    assert set(counted) == {s.title for s in SAMPLES}
    assert all(counted[s.title] >= n for s, n in zip(SAMPLES, VIEWS_PLAN, strict=True))
    assert sum(counted.values()) > sum(VIEWS_PLAN)
    assert sorted(v.title for v in videos if v.status == "ready") == sorted(
        s.title for s in SAMPLES)
    # the picture is refused: at upload (415) through the HTTP API, or by the probe stage
    failed = [v for v in videos if v.status == "failed"]
    assert len(videos) in (len(SAMPLES), len(SAMPLES) + 1)
    if failed:
        assert len(failed) == 1 and failed[0].reason is not None
        assert "not a video" in failed[0].reason
    silent = next(v for v in videos if v.title.startswith("Silent"))
    assert silent.metadata is not None and not silent.metadata.has_audio
    assert all(r.width <= 640 for v in videos for r in v.renditions)  # never upscaled


REF = FileRef(url="file:///x", size=1, sha256="0" * 64)


def video(video_id: str, title: str, *, height: int, took: float, reason: str | None = None,
          rungs: tuple[int, ...] = (240, 360)) -> Video:
    # only what the summary shows (model_construct: the other probe fields do not matter)
    meta = VideoMetadata.model_construct(duration_s=4.0, width=height * 16 // 9, height=height)
    renditions = [RenditionInfo(name=f"{h}p", width=h * 16 // 9, height=h, bitrate=1,
                                peak_bitrate=1, has_audio=True, ref=REF, playlist=REF)
                  for h in rungs]
    return Video(video_id=video_id, title=title, status="failed" if reason else "ready",
                 reason=reason, source=REF, metadata=meta, renditions=renditions,
                 uploaded_at=1000.0, finished_at=1000.0 + took)


def test_the_summary_fits_80_columns_with_every_header_whole() -> None:
    rows = [
        _row("Harbour at dawn (640x360)", video("3f2a9c0d1e2b4a5c", "h", height=360,
                                                   took=3.14), None),
        _row("Silent clip, rotated 90°, no audio", video("0123456789abcdef", "s", height=720,
                                                         took=12.5, rungs=(240, 360, 720)),
             None),
        _row("Broadcast [news] at 1080 lines", video(
            "fedcba9876543210", "b", height=1080, took=1.0, rungs=(),
            reason="transcode: width 1920 exceeds the limit of 1280; raise VIDEOSITE_MAX_WIDTH "
                   "or upload a smaller video"), None),
        _row("A picture, not a video", None, "415: not a video: an image (png)"),
    ]
    console = Console(width=80, record=True)
    console.print(summary(rows, 14.25, 3, 80))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    header = ("video / id              status   length s  size       renditions      "
              "ready in s")
    assert lines[1] == header
    # every header whole, in order, and nothing wider than the terminal
    assert re.split(r"\s{2,}", header) == [h for h, _ in SUMMARY_COLUMNS]
    assert "…" not in header and max(map(len, lines)) <= 80
    assert lines == [
        "3 videos processed in 14.2 s",
        header,
        "─" * 80,
        "Harbour at dawn (640x…  ready         4.0  640x360    240p 360p              3.1",
        "3f2a9c0d1e2b4a5c",
        "Silent clip, rotated …  ready         4.0  1280x720   240p 360p 720p        12.5",
        "0123456789abcdef",
        "Broadcast [news] at 1…  failed        4.0  1920x1080                         1.0",
        "fedcba9876543210",
        "A picture, not a video  refused",
        # each reason whole, on its own lines
        "Broadcast [news] at 1080 lines: transcode: width 1920 exceeds the limit of 1280;",
        "raise VIDEOSITE_MAX_WIDTH or upload a smaller video",
        "A picture, not a video: 415: not a video: an image (png)",
    ]
