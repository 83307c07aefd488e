"""View events and what the site makes of them, on a real embedded platform.

``POST /api/views`` accepts a player's events for a ready video and sends them to stream
``views`` exactly as accepted (stamped with the site's clock, here a hand-set one); refuses
unknown and unfinished videos, malformed events and clients over their limit (429 with
``Retry-After``, losing none of the accepted ones); ``view-titles`` adds the catalog's title.
The gallery's "Trending now" row and a video page's views per hour are read from window
rows in the design's ``WindowRow`` shape.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from millstream.files import FileRef
from millstream.runtime._clock import SystemClock
from millstream.testing import TestPlatform
from videosite._viewers import watch
from videosite.app import app, titled_views, views
from videosite.inprocess import free_port
from videosite.models import TitledView, Video, View
from videosite.trending import (
    TABLE,
    HourCount,
    Trending,
    current_window,
    per_hour,
    ranked,
    window_rows,
)
from videosite.web import create_app
from videosite.web._throttle import Throttle, Verdict
from videosite.web.server import build_server
from videosite.web.viewing import ViewRefused, parse_view

TOKEN = "views-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STAGES = ("probe", "thumbnail", "transcode", "join")
#: 2026-12-06 14:37:30 UTC: 7.5 minutes into a five-minute hop, 37.5 into the hour
NOW = 1_796_567_850.0
HOUR_MS = 3_600_000
SESSION = "0123456789abcdef"


class Clock:
    """The site's clock, set by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the throttle ----------------------------------------------------------------------------


def test_a_client_gets_its_burst_then_one_request_per_refill() -> None:
    clock = Clock(100.0)
    throttle = Throttle(rate=0.5, burst=3, clock=clock)
    assert [throttle.take("a") for _ in range(4)] == [Verdict(True)] * 3 + [Verdict(False, 2)]
    assert throttle.take("b") == Verdict(True)  # per client
    clock.now += 1.0  # half a token
    assert throttle.take("a") == Verdict(False, 1)
    clock.now += 1.0
    assert [throttle.take("a"), throttle.take("a")] == [Verdict(True), Verdict(False, 2)]
    clock.now += 100.0  # refilled to the burst, not beyond
    assert [throttle.take("a") for _ in range(4)] == [Verdict(True)] * 3 + [Verdict(False, 2)]
    assert throttle.describe() == "3 at once, then 0.5 per second"


def test_the_throttle_remembers_at_most_max_clients() -> None:
    throttle = Throttle(rate=1.0, burst=1, max_clients=2, clock=Clock(0.0))
    assert [throttle.take(c).accepted for c in ("a", "b", "a", "c")] == [True, True, False,
                                                                          True]
    assert len(throttle) == 2  # b, the least recently seen, was forgotten
    assert [throttle.take("a").accepted, throttle.take("b").accepted] == [False, True]


@pytest.mark.parametrize(("rate", "burst", "message"), [
    (0.0, 1, "a throttle's rate must be a number of requests per second above 0, not 0.0"),
    (float("inf"), 1, "rate must be a number of requests per second above 0, not inf"),
    (1.0, 0, "a throttle's burst must be at least 1 request, not 0"),
])
def test_a_throttle_without_a_limit_is_refused(rate: float, burst: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Throttle(rate, burst)


# -- parsing ---------------------------------------------------------------------------------


def event(**fields: Any) -> bytes:
    doc = {"video_id": "00000000000000aa", "event": "start", "session": SESSION,
           "position_s": 0.0, **fields}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_view_event_is_parsed_and_stamped_with_the_sites_time() -> None:
    assert parse_view(event(event="progress", position_s=10), 5.5) == View(
        video_id="00000000000000aa", event="progress", session=SESSION, position_s=10.0,
        at=5.5)


@pytest.mark.parametrize(("body", "reason"), [
    (b"{", "the body is not JSON: send a view event as a JSON object with video_id, event, "
           "session, position_s"),
    (b"[]", "a view event is a JSON object with video_id, event, session, position_s, not "
            "list"),
    (event(session=..., user="x"), "a view event has exactly the fields video_id, event, "
                                   "session, position_s (missing session; unknown 'user')"),
    (event(video_id="ZZ"), "video_id 'ZZ' is not a video id (16 lowercase hex digits)"),
    (event(video_id="00000000000000aa\n"), "video_id '00000000000000aa\\n' is not a video id"),
    (event(event="stop"), "event 'stop' is not one of start, progress, end"),
    (event(session="abc"), "session 'abc' is not a playback id (16 lowercase hex digits, new "
                           "for each playback)"),
    (event(position_s=-1), "position_s -1 is not a number of seconds from 0 to 86400"),
    (event(position_s=True), "position_s True is not a number of seconds"),
    (event(position_s="3"), "position_s '3' is not a number of seconds"),
])
def test_a_malformed_view_event_is_refused_naming_the_value(body: bytes, reason: str) -> None:
    with pytest.raises(ViewRefused) as refused:
        parse_view(body, 0.0)
    assert (refused.value.status, refused.value.reason[:len(reason)]) == (422, reason)


# -- reading window rows -------------------------------------------------------------------


def row(video_id: str, start_ms: int, views: int, title: str | None = None) -> dict[str, Any]:
    """A window row as the design's WindowRow has it."""
    return {"key": video_id, "start": start_ms, "end": start_ms + HOUR_MS,
            "value": {"views": views, "title": title}, "records": 2 * views, "closed": False}


def test_the_current_window_is_the_open_one_that_began_longest_ago() -> None:
    start, end = current_window(NOW)
    # 14:37:30 → [13:40, 14:40): the windows holding it began at 13:40, 13:45 ... 14:35
    assert (start, end) == (1_796_564_400_000, 1_796_568_000_000)
    assert end - int(NOW * 1000) == 150_000
    assert current_window(end / 1000) == (start + 300_000, end + 300_000)
    assert current_window(end / 1000 - 0.001) == (start, end)


def test_trending_ranks_the_videos_of_the_current_window() -> None:
    start, _ = current_window(NOW)
    rows = [row("a" * 16, start, 3, "Alpha"), row("b" * 16, start, 5, "Beta"),
            row("c" * 16, start, 3, "Gamma"), row("d" * 16, start - 300_000, 9, "Old"),
            row("e" * 16, start + 300_000, 4, "Later window"), row("f" * 16, start, 0)]
    assert ranked(rows, NOW) == [Trending("b" * 16, 5, "Beta"), Trending("a" * 16, 3, "Alpha"),
                                 Trending("c" * 16, 3, "Gamma")]
    assert ranked(rows, NOW, limit=1) == [Trending("b" * 16, 5, "Beta")]


def test_views_per_hour_are_the_windows_that_start_on_the_hour() -> None:
    this_hour = int(NOW * 1000) // HOUR_MS * HOUR_MS
    rows = [row("a" * 16, this_hour, 4), row("a" * 16, this_hour - 300_000, 7),
            row("a" * 16, this_hour - 2 * HOUR_MS, 2), row("a" * 16, this_hour - 3 * HOUR_MS, 1)]
    assert per_hour(rows, NOW, hours=3) == [HourCount(this_hour - 2 * HOUR_MS, 2),
                                            HourCount(this_hour - HOUR_MS, 0),
                                            HourCount(this_hour, 4)]
    assert len(per_hour(rows, NOW)) == 24


# -- the endpoint, on a real platform ----------------------------------------------------------


@dataclass
class Site:
    platform: TestPlatform
    client: TestClient
    clock: Clock
    ready: str  # a ready video's id
    processing: str  # one catalogued, not processed yet


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("views-home")
    clock = Clock(NOW)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILLSTREAM_HOME", str(home))
        with TestPlatform(app, clock=SystemClock()) as platform:
            web = create_app(platform.url, platform.files, platform.tables, token=TOKEN,
                             clock=clock, view_burst=4, view_rate=0.5)
            with TestClient(web, client=("203.0.113.7", 50000)) as client:
                ready = upload(client, clips["tiny"], "Tiny clip")
                for service in STAGES:
                    platform.run_until_idle(service, timeout=60.0)
                processing = upload(client, clips["tiny"], "Still processing")
                platform.run_until_idle("join", timeout=30.0)
                yield Site(platform, client, clock, ready, processing)


def upload(client: TestClient, path: Path, title: str) -> str:
    with path.open("rb") as f:
        res = client.post("/api/videos", files={"file": (path.name, f, "video/mp4")},
                          data={"title": title}, headers=AUTH)
    assert res.status_code == 202, res.text
    return str(res.json()["id"])


def post(site: Site, body: bytes | dict[str, Any], *, kind: str = "application/json",
         client: str = "203.0.113.7") -> httpx2.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    # a client of its own address (not entered: the app's lifespan is the module's client's)
    other = TestClient(site.client.app, client=(client, 50000))
    return other.post("/api/views", content=data, headers={"Content-Type": kind})


def view(video_id: str, event: str = "start", position: float = 0.0) -> dict[str, Any]:
    return {"video_id": video_id, "event": event, "session": SESSION, "position_s": position}


def test_view_events_are_accepted_refused_and_throttled_losing_none_accepted(
        site: Site) -> None:
    before = len(site.platform.values(views))
    site.clock.now = NOW
    answers = [post(site, view(site.ready, e, p)) for e, p in
               (("start", 0), ("progress", 10), ("end", 12.5), ("start", 0), ("end", 1))]
    assert [a.status_code for a in answers] == [202, 202, 202, 202, 429]
    assert answers[0].json() == {"video_id": site.ready, "event": "start", "at": NOW}
    refused = answers[4]
    assert refused.headers["retry-after"] == "2"
    assert refused.json() == {"detail": "too many view events from 203.0.113.7: the limit is "
                                        "4 at once, then 0.5 per second; retry after 2 s"}
    # another client has its own bucket; this one gets one more event after two seconds
    assert post(site, view(site.ready, "start"), client="198.51.100.2").status_code == 202
    site.clock.now = NOW + 2.0
    assert post(site, view(site.ready, "end", 1)).status_code == 202
    assert post(site, view(site.ready, "end", 1)).status_code == 429
    stored = site.platform.values(views)[before:]
    assert [(v.event, v.position_s, v.at) for v in stored] == [
        ("start", 0.0, NOW), ("progress", 10.0, NOW), ("end", 12.5, NOW), ("start", 0.0, NOW),
        ("start", 0.0, NOW), ("end", 1.0, NOW + 2.0)]
    assert {v.video_id for v in stored} == {site.ready}
    records = site.platform.records(views)[before:]
    assert {r.key for r in records} == {site.ready.encode()}  # keyed by video id


def test_events_of_unknown_unfinished_or_malformed_views_are_refused_and_not_sent(
        site: Site) -> None:
    before = len(site.platform.values(views))
    site.clock.now = NOW + 1000.0  # a full bucket for each client
    unknown = "feedfacefeedface"
    cases = [
        ("192.0.2.1", view(unknown), "application/json", 404,
         f"no video {unknown} in the catalog: views are counted for catalogued videos only"),
        ("192.0.2.2", view(site.processing), "application/json", 409,
         f"video {site.processing} is processing, not ready: it has nothing to play, so no "
         "view of it is counted"),
        ("192.0.2.3", view(site.ready, "pause"), "application/json", 422,
         "event 'pause' is not one of start, progress, end"),
        ("192.0.2.4", view(site.ready), "text/plain", 415,
         "a view event is sent as application/json, not text/plain"),
        ("192.0.2.5", b"{" + b" " * 2000 + b"}", "application/json", 413,
         "a view event is at most 1024 bytes, not 2002"),
    ]
    for client, body, kind, status, detail in cases:
        answer = post(site, body, kind=kind, client=client)
        assert (answer.status_code, answer.json()) == (status, {"detail": detail})
    assert site.platform.values(views)[before:] == []


def test_view_titles_adds_the_catalogs_title_to_each_view(site: Site) -> None:
    site.clock.now = NOW + 2000.0
    assert post(site, view(site.ready), client="192.0.2.9").status_code == 202
    site.platform.run_until_idle("view-titles", timeout=30.0)
    accepted = site.platform.values(views)
    titled = site.platform.values(titled_views)
    assert titled == [TitledView(**v.model_dump(), title="Tiny clip") for v in accepted]
    assert {r.key for r in site.platform.records(titled_views)} == {site.ready.encode()}


# -- the pages ------------------------------------------------------------------------------


REF = FileRef(url="file:///x", size=1, sha256="0" * 64)


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    """The site over a platform whose catalog and window table are written directly."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILLSTREAM_HOME", str(tmp_path))
        with TestPlatform(app, clock=SystemClock()) as platform:
            web = create_app(platform.url, platform.files, platform.tables, token=TOKEN,
                             clock=Clock(NOW))
            with TestClient(web) as client:
                yield client, platform.tables


def catalogue(tables: Any, video_id: str, title: str) -> None:
    tables.ensure_table("videos").put(video_id, Video(
        video_id=video_id, title=title, status="ready", source=REF, uploaded_at=NOW - 7200))


def test_the_gallery_shows_trending_now_from_the_current_window(
        pages: tuple[TestClient, Any]) -> None:
    client, tables = pages
    start, _ = current_window(NOW)
    for video_id, title in (("a" * 16, "Alpha"), ("b" * 16, "Beta <b>"), ("c" * 16, "Gamma")):
        catalogue(tables, video_id, title)
    windows = tables.ensure_table(TABLE, indexes=["key"])
    for r in (row("a" * 16, start, 2, "Alpha"), row("b" * 16, start, 7, "Beta <b>"),
              row("c" * 16, start, 1),  # no title in the row: the catalog's
              row("a" * 16, start - 300_000, 40, "Alpha")):  # an older window
        windows.put(f"{r['key']}/{r['start']:015d}", r)
    html = client.get("/").text
    trends = re.findall(r'data-trending-id="(\w+)" data-views="(\d+)">.*?<span '
                        r'class="title">(.*?)</span>.*?<span class="views">(.*?)</span>',
                        html, re.S)
    assert trends == [("b" * 16, "7", "Beta &lt;b&gt;", "7 views"),
                      ("a" * 16, "2", "Alpha", "2 views"), ("c" * 16, "1", "Gamma", "1 view")]


def test_the_gallery_says_when_nothing_was_viewed(pages: tuple[TestClient, Any]) -> None:
    client, _ = pages
    html = client.get("/").text
    assert '<h2 id="trending-title">Trending now</h2>\n<p class="empty">No views in the last ' \
           'hour.</p>' in html


def test_a_video_page_shows_its_views_per_hour(pages: tuple[TestClient, Any]) -> None:
    client, tables = pages
    video_id = "a" * 16
    catalogue(tables, video_id, "Alpha")
    this_hour = int(NOW * 1000) // HOUR_MS * HOUR_MS  # 14:00
    windows = tables.ensure_table(TABLE, indexes=["key"])
    for r in (row(video_id, this_hour, 3), row(video_id, this_hour - 300_000, 9),
              row(video_id, this_hour - 2 * HOUR_MS, 5), row("b" * 16, this_hour, 8)):
        windows.put(f"{r['key']}/{r['start']:015d}", r)
    html = client.get(f"/videos/{video_id}").text
    assert '<span id="views-day">8 views</span> in the last 24 hours' in html
    cells = re.findall(r'<tr data-hour="(\d+)"><td>(.*?)</td><td>(\d+)</td></tr>', html)
    assert cells == [(str(this_hour), "2026-12-06 14:00", "3"),
                     (str(this_hour - 2 * HOUR_MS), "2026-12-06 12:00", "5")]
    series = json.loads(re.search(r'data-hours="(.*?)"', html)[1].replace("&#34;", '"'))
    assert series["start"] == [this_hour - h * HOUR_MS for h in range(23, -1, -1)]
    assert series["views"] == [0] * 21 + [5, 0, 3]
    assert '<script src="/static/vendor/uPlot.iife.min.js" defer></script>' in html


# -- the demo's viewers, over HTTP ---------------------------------------------------------------


def test_the_demos_viewers_wait_out_the_throttle_and_lose_no_event(site: Site) -> None:
    video = site.platform.tables.table("videos").get(site.ready, Video)
    assert video is not None and video.metadata is not None
    site.clock.now = NOW + 5000.0
    web = create_app(site.platform.url, site.platform.files, site.platform.tables,
                     token=TOKEN, clock=site.clock, view_burst=3, view_rate=0.25)
    server = build_server(web, host="127.0.0.1", port=free_port(), log_level="warning")
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the site's clock moves instead
        waited.append(seconds)
        site.clock.now += seconds

    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        before = len(site.platform.values(views))
        url = f"http://127.0.0.1:{server.config.port}"
        assert watch(url, [video], plan=(4,), sleep=sleep) == {site.ready: 4}
    finally:
        server.should_exit = True
        thread.join(10)
    # 8 events, 3 at once then one per 4 s: five waits of 4 s, none sent twice
    assert waited == [4.0] * 5
    sent = site.platform.values(views)[before:]
    assert [v.event for v in sent] == ["start", "end"] * 4
    assert [v.position_s for v in sent] == [0.0, round(video.metadata.duration_s, 3)] * 4
    assert len({v.session for v in sent}) == 4


# -- the whole way: events → view-titles → views-hourly → the pages, on the site's real clock --


def test_accepted_views_are_counted_in_each_hopping_window_and_shown_as_trending(
        tmp_path: Path, clips: dict[str, Path]) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MILLSTREAM_HOME", str(tmp_path))
        with TestPlatform(app, clock=SystemClock()) as platform:
            web = create_app(platform.url, platform.files, platform.tables, token=TOKEN)
            with TestClient(web) as client:
                ready = upload(client, clips["tiny"], "Counted <clip>")
                for service in STAGES:
                    platform.run_until_idle(service, timeout=60.0)
                sessions = [f"{n:016x}" for n in range(3)]
                sent = [(s, e) for s in sessions for e in ("start", "end")][:5]  # one not ended
                for session, event in sent:
                    answer = client.post("/api/views", json={
                        "video_id": ready, "event": event, "session": session,
                        "position_s": 0.0 if event == "start" else 1.0})
                    assert answer.status_code == 202, answer.text
                for service in ("view-titles", "views-hourly"):
                    platform.run_until_idle(service, timeout=30.0)
                times = [(v.at, v.event) for v in platform.values(views)]
                rows = window_rows(platform.tables, f"{ready}/")
                gallery = client.get("/").text
                page = client.get(f"/videos/{ready}").text
    assert [e for _, e in times] == [e for _, e in sent]
    expected: dict[int, tuple[int, int]] = {}  # window start -> (views, events)
    for at, event in times:
        ms = int(at * 1000)
        for start in range((ms - 3_600_000) // 300_000 * 300_000 + 300_000, ms + 1, 300_000):
            views_in, events_in = expected.get(start, (0, 0))
            expected[start] = (views_in + (event == "start"), events_in + 1)
    assert len(expected) in (12, 13)  # 13 only when the events straddle a five-minute mark
    assert sorted((r["key"], r["start"], r["end"], r["value"], r["records"], r["closed"])
                  for r in rows) == sorted(
        (ready, start, start + 3_600_000, {"views": n, "title": "Counted <clip>"}, k, False)
        for start, (n, k) in expected.items())
    assert f'data-trending-id="{ready}" data-views="3"' in gallery
    assert "Counted &lt;clip&gt;</span>\n    </a>\n    <span class=\"views\">3 views</span>" \
        in gallery
    assert '<span id="views-day">3 views</span>' in page
