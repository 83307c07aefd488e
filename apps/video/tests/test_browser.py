"""The pages in a real browser: headless Chromium (``/usr/bin/chromium``) driven by Playwright.

The app is served by ``build_server`` on a free port in a thread, over a real embedded
platform. A clip is uploaded through the API and processed; the video page must play a
rendition (time advances, the decoded width is the rendition's) and switch quality; a second
clip uploaded through the form (XHR with progress) shows up in a gallery opened before it
was catalogued, as processing, and the gallery's polling script follows it to ready without
a reload. A third clip is
played to its end: the player's start and end events reach stream ``views`` through
``POST /api/views``, the view windows count them, and the gallery's "Trending now" row and
the video page's views per hour (uPlot's chart) show exactly that one view. Every page is
photographed, wide and at a phone's width, into ``.cache/screenshots/video/`` (look at
them after a change of the design). Skipped without Chromium or the playwright wheel,
unless ``MILLSTREAM_REQUIRE_SERVICES=1`` (then they fail).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.support.browser import chromium

from millstream.runtime._clock import SystemClock
from millstream.testing import TestPlatform
from videosite.app import app, views
from videosite.web import create_app
from videosite.web.ops import NUMBERS
from videosite.web.server import build_server
from videosite_testing import faststart, half

TOKEN = "browser-token"
#: the status label of a gallery card starts with the text (a function: the CSP forbids eval)
STATUS_IS = """([id, text]) => document.querySelector(`[data-video-id='${id}'] .status`)
    .textContent.startsWith(text)"""
STAGES = ("probe", "thumbnail", "transcode", "join")
#: what turns view events into window rows
VIEW_SERVICES = ("view-titles", "views-hourly")
#: where the pages' screenshots go (the repository's .cache), and the two widths they have
SHOTS = Path(__file__).resolve().parents[3] / ".cache" / "screenshots" / "video"
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
#: more clips for the gallery: (clip, title); and one cut in half, which fails
GALLERY = (("wide", "Harbour at dawn"), ("landscape", "Street corner"),
           ("rotated", "Silent clip, rotated 90°"))
CUT_SHORT = "Cut short (half of the file)"


#: a stage list's items as [stage, state, state in words]
STAGE_STATES = """ls => ls.map(l => [l.dataset.stage, l.dataset.state,
    l.querySelector('.state').textContent])"""


def _shoot(page: Any, name: str) -> None:
    """The whole page, as ``.cache/screenshots/video/<name>.png``, once its images loaded
    (those below the fold too: lazy ones are made eager, as scrolling down would)."""
    page.eval_on_selector_all("img[loading=lazy]", "is => is.forEach(i => i.loading = 'eager')")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@dataclass
class Served:
    platform: TestPlatform
    base: str
    video_id: str
    watched_id: str  # played to its end by one test only
    failed_id: str  # a file cut in half: it fails in the transcode


def _cut_short(source: Path, folder: Path) -> Path:
    """The first half of ``source`` remuxed with its index first: it opens and passes the
    upload's checks, and fails as truncated in the transcode."""
    return half(faststart(source, folder / "faststart.mp4"), folder / "cut.mp4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]
           ) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("browser-home")
    with pytest.MonkeyPatch.context() as env, TestPlatform(app, clock=SystemClock()) as platform:
        env.setenv("MILLSTREAM_HOME", str(home))
        web = create_app(platform.url, platform.files, platform.tables, token=TOKEN)
        port = _free_port()
        server = build_server(web, host="127.0.0.1", port=port, log_level="warning")
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        files = {**clips, "cut": _cut_short(clips["wide"], home)}
        try:
            ids = []
            for clip, title in (("portrait", "Portrait"), ("tiny", "Watched to the end"),
                                ("cut", CUT_SHORT), *GALLERY):
                with files[clip].open("rb") as f:
                    res = httpx2.post(f"{base}/api/videos", data={"title": title},
                                      files={"file": (f"{clip}.mp4", f, "video/mp4")},
                                      headers={"Authorization": f"Bearer {TOKEN}"})
                assert res.status_code == 202, res.text
                ids.append(res.json()["id"])
            for service in STAGES:
                platform.run_until_idle(service, timeout=60.0)
            yield Served(platform, base, *ids[:3])
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _errors_of(page: Any) -> list[str]:
    """The list ``page``'s console errors and script errors go into as they happen (CSP
    violations and failed loads among them)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh page; console errors (CSP violations and failed loads among them) fail the
    test. A screenshot of the last state is kept in the test's tmp_path."""
    page = browser.new_page()
    errors = _errors_of(page)
    page.set_default_timeout(15_000)
    yield page
    page.screenshot(path=str(tmp_path / "last.png"))
    page.close()
    assert errors == [], f"console errors: {errors} (screenshot in {tmp_path})"


def test_the_video_page_plays_and_switches_quality(served: Served, page: Any) -> None:
    page.goto(f"{served.base}/videos/{served.video_id}")
    options = page.eval_on_selector_all("#quality option", "os => os.map(o => o.textContent)")
    assert options == ["360p (360×640)", "240p (240×426)"]
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.3")
    assert page.evaluate("document.getElementById('player').videoWidth") == 360
    page.select_option("#quality", label="240p (240×426)")
    page.wait_for_function("""() => { const v = document.getElementById('player');
        return v.videoWidth === 240 && v.src.endsWith('/240p.mp4'); }""")
    page.evaluate("document.getElementById('player').play()")
    start = page.evaluate("document.getElementById('player').currentTime")
    page.wait_for_function("t => document.getElementById('player').currentTime > t + 0.2",
                           arg=start)
    assert page.get_attribute("#hls", "href") == f"/media/{served.video_id}/master.m3u8"
    assert page.eval_on_selector_all(".thumbs img", "is => is.every(i => i.naturalWidth > 0)")


def test_an_upload_through_the_form_is_followed_to_ready(served: Served, page: Any,
                                                         browser: Any,
                                                         clips: dict[str, Path]) -> None:
    page.goto(f"{served.base}/upload")
    page.fill("input[name=title]", "From the <form>")
    page.fill("input[name=token]", TOKEN)
    page.set_input_files("input[name=file]", str(clips["tiny"]))
    page.click("button[type=submit]")
    page.wait_for_selector("#upload-result a")
    assert page.evaluate("document.getElementById('upload-progress').value") == 1
    new_id = page.get_attribute("#upload-result a", "href").rsplit("/", 1)[-1]
    page.goto(f"{served.base}/")
    before = page.eval_on_selector_all("ul.gallery > li", "ls => ls.map(l => l.dataset.videoId)")
    assert new_id not in before and len(before) == 6  # not catalogued yet
    served.platform.run_until_idle("join", timeout=30.0)  # catalogued as processing
    # the open gallery takes it in without a reload, in its place: first, the newest
    page.wait_for_selector(f"[data-video-id='{new_id}']")
    assert page.eval_on_selector_all(
        "ul.gallery > li", "ls => ls.map(l => l.dataset.videoId)") == [new_id, *before] == [
        v["id"] for v in httpx2.get(f"{served.base}/api/videos").json()["videos"]]
    card = page.locator(f"[data-video-id='{new_id}']")
    assert card.locator(".title").text_content() == "From the <form>"
    assert page.locator(f"[data-video-id='{served.video_id}'] .status").text_content() \
        == "ready"
    page.wait_for_function(STATUS_IS, arg=[new_id, "processing"])
    for service in ("probe", "thumbnail"):
        served.platform.run_until_idle(service, timeout=30.0)
    page.wait_for_function(STATUS_IS, arg=[new_id, "processing 67%"])
    # each stage's state, live: in words, and as the attribute the colours and icons follow
    assert card.locator(".stages li").evaluate_all(STAGE_STATES) == [
        ["probe", "done", "done"], ["thumbnail", "done", "done"],
        ["transcode", "waiting", "waiting"], ["join", "waiting", "waiting"]]
    assert card.locator(".status").get_attribute("data-status") == "processing"
    assert card.locator("progress").evaluate("p => p.value") == pytest.approx(2 / 3)
    page.set_viewport_size(WIDE)
    _shoot(page, "gallery-processing")
    # its own page says the same where the player will be, and reloads once it is ready
    watch = browser.new_page()
    errors = _errors_of(watch)
    watch.set_viewport_size(WIDE)
    watch.goto(f"{served.base}/videos/{new_id}")
    assert watch.locator(".details .stages li").evaluate_all(STAGE_STATES) == [
        ["probe", "done", "done"], ["thumbnail", "done", "done"],
        ["transcode", "waiting", "waiting"], ["join", "waiting", "waiting"]]
    assert watch.locator(".details .status").text_content() == "processing 67%"
    assert watch.locator("#player").count() == 0
    _shoot(watch, "player-processing")
    for service in ("transcode", "join"):
        served.platform.run_until_idle(service, timeout=30.0)
    watch.wait_for_selector("#player")
    assert watch.locator(".details .status").text_content() == "ready"
    assert watch.locator(".details .stages").count() == 0
    watch.close()
    assert errors == []
    page.wait_for_function(STATUS_IS, arg=[new_id, "ready"])
    assert card.locator("progress").count() == 0 and card.locator(".stages").count() == 0
    # finished without a reload: the poster, the length and the rungs the API gives
    doc = httpx2.get(f"{served.base}/api/videos/{new_id}").json()
    assert card.locator(".status").get_attribute("data-status") == "ready"
    page.wait_for_function("id => document.querySelector(`[data-video-id='${id}'] .thumb img`)"
                           "?.naturalWidth > 0", arg=new_id)
    assert card.locator(".thumb img").get_attribute("src") == f"/media/{new_id}/poster.jpg"
    assert card.locator(".duration").text_content() == "0:01"
    assert card.locator(".rungs").text_content() == " · ".join(
        r["name"] for r in doc["renditions"])


def test_the_ops_page_asks_the_browser_for_the_token(served: Served, browser: Any) -> None:
    # the 401 challenges with Basic alone: with "..., Bearer" after it Chromium would not
    # answer the challenge with the credentials it has
    context = browser.new_context(http_credentials={"username": "operator",
                                                    "password": TOKEN})
    try:
        page = context.new_page()
        answer = page.goto(f"{served.base}/ops")
        assert answer is not None and answer.status == 200
        assert page.inner_text("h1") == "Services"
        rows = page.eval_on_selector_all("table.ops tbody tr td:first-child",
                                         "cells => cells.map(c => c.textContent)")
        assert set(STAGES) <= set(rows)
    finally:
        context.close()
    wrong = browser.new_context(http_credentials={"username": "operator",
                                                  "password": "wrong"})
    try:
        page = wrong.new_page()
        answer = page.goto(f"{served.base}/ops")
        assert answer is not None and answer.status == 401
        assert "Services" not in page.content()
    finally:
        wrong.close()


def test_the_ops_page_shows_health_as_the_console_does_and_links_to_it(
        served: Served, browser: Any) -> None:
    context = browser.new_context(http_credentials={"username": "operator",
                                                    "password": TOKEN})
    try:
        page = context.new_page()
        errors = _errors_of(page)
        page.goto(f"{served.base}/ops")
        # every service's health is the console's badge, styled by the console's own sheet
        badges = page.eval_on_selector_all(
            "table.ops tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
            "r.cells[1].querySelector('.badge').className, r.cells[1].textContent])")
        assert {name for name, _, _ in badges} >= set(STAGES)
        assert all(cls == f"badge status-{text}" for _, cls, text in badges)
        stopped = page.eval_on_selector(".badge.status-stopped",
                                        "b => getComputedStyle(b).backgroundColor")
        assert stopped == "rgb(226, 232, 240)"  # the console's --idle-bg, #e2e8f0
        assert page.get_attribute("#console-link", "href") == "http://127.0.0.1:8765/"
        # live: the rows again from /api/ops, cell for cell
        page.wait_for_selector("#ops-live.live.ok")
        shown = page.eval_on_selector_all(
            "table.ops tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
            "...[...r.querySelectorAll('[data-field]')].map(c => c.textContent)])")
        answer = httpx2.get(f"{served.base}/api/ops", headers={"Authorization":
                                                               f"Bearer {TOKEN}"}).json()
        assert shown == [[r["name"], r["status"], *(r[f] for f in NUMBERS)]
                         for r in answer["services"]]
        # the topology: each service's health as its row says it, coloured by the console's
        # sheet, and kept live from the same rows (a badge changed here is put right again)
        topology = """() => Object.fromEntries([...document.querySelectorAll(
            'svg.topology g.service')].map(g => [g.dataset.id.slice(8),
            [[...g.classList].find(c => c.startsWith('health-')).slice(7),
             g.querySelector('.badge-text').textContent]]))"""
        rows = {r["name"]: r["status"] for r in answer["services"]}
        assert page.evaluate(topology) == {name: [rows.get(name, "silent")] * 2
                                           for name in app.services}
        assert page.eval_on_selector("g.service[data-id='service:probe'] rect.box",
                                     "r => getComputedStyle(r).strokeDasharray") == "5px, 3px"
        page.evaluate("""() => { const g = document.querySelector(
            "g.service[data-id='service:probe']"); g.classList.replace(
            'health-stopped', 'health-erroring'); g.querySelector('.badge-text')
            .textContent = 'erroring'; }""")
        page.wait_for_function(f"() => ({topology})().probe[0] === 'stopped'")
        assert page.evaluate(topology)["probe"] == ["stopped", "stopped"]
        assert page.get_attribute("a:has(> g.service[data-id='service:probe'])", "href") == (
            "http://127.0.0.1:8765/services/videosite.probe")
    finally:
        context.close()
    assert errors == []


def test_a_video_played_to_its_end_is_trending_with_one_view(served: Served,
                                                              page: Any) -> None:
    watched = served.watched_id

    def events() -> list[tuple[str, str, float]]:
        return [(v.event, v.session, v.position_s) for v in served.platform.values(views)
                if v.video_id == watched]

    page.goto(f"{served.base}/videos/{watched}")
    assert page.inner_text("#views-day") == "0 views"
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function("() => document.getElementById('player').ended")
    duration = page.evaluate("document.getElementById('player').duration")
    got = served.platform.wait_until(lambda: len(events()) == 2 and events(), timeout=10.0,
                                     message="the player's start and end events")
    (start, session, at_start), (end, session_end, at_end) = got
    assert (start, at_start, end, session_end, at_end) == ("start", 0.0, "end", session,
                                                           duration)
    assert len(session) == 16
    for service in VIEW_SERVICES:
        served.platform.run_until_idle(service, timeout=30.0)
    page.goto(f"{served.base}/")
    trend = page.locator(f"[data-trending-id='{watched}']")
    assert trend.get_attribute("data-views") == "1"
    assert trend.locator(".title").text_content() == "Watched to the end"
    assert trend.locator(".views").text_content() == "1 view"
    page.goto(f"{served.base}/videos/{watched}")
    assert page.inner_text("#views-day") == "1 view"
    assert page.eval_on_selector_all(".per-hour tbody td:last-child",
                                     "cells => cells.map(c => c.textContent)") == ["1"]
    page.wait_for_selector("#views-chart.drawn .uplot canvas")
    assert len(events()) == 2  # reading the pages sent nothing


def _box(page: Any, selector: str) -> dict[str, float]:
    box: dict[str, float] = page.locator(selector).bounding_box()
    return box


@pytest.mark.parametrize("screen", ["wide", "phone"])
def test_every_page_reflows_from_a_phone_to_a_wide_screen(served: Served, browser: Any,
                                                           screen: str) -> None:
    size = WIDE if screen == "wide" else PHONE
    context = browser.new_context(viewport=size, http_credentials={"username": "operator",
                                                                   "password": TOKEN})
    try:
        page = context.new_page()
        errors = _errors_of(page)
        page.set_default_timeout(15_000)
        page.goto(f"{served.base}/")
        # the gallery's grid: five columns of cards at 1440 px, one on a phone
        columns = page.evaluate("getComputedStyle(document.querySelector('.gallery'))"
                                ".gridTemplateColumns.split(' ').length")
        assert columns == (5 if screen == "wide" else 1)
        # the thumbnails keep 16:9 whatever the clip's shape (a portrait one among them)
        ratios = page.eval_on_selector_all(".card .thumb", "ts => ts.map(t => { "
                                           "const r = t.getBoundingClientRect(); "
                                           "return r.width / r.height; })")
        catalogued = len(list(served.platform.tables.table("videos").scan()))
        assert ratios == [pytest.approx(16 / 9, abs=0.01)] * catalogued and catalogued >= 6
        failed = page.locator(f"[data-video-id='{served.failed_id}']")
        reason = httpx2.get(f"{served.base}/api/videos/{served.failed_id}").json()["reason"]
        assert failed.locator(".status").text_content() == "failed"
        assert failed.locator(".reason").text_content() == reason and "truncated" in reason
        _shoot(page, f"gallery-{screen}")

        page.goto(f"{served.base}/videos/{served.video_id}")
        page.wait_for_selector("#views-chart.drawn .uplot canvas")
        player, details = _box(page, ".screen"), _box(page, ".details")
        if screen == "wide":  # the details beside the player, the player the larger
            assert details["x"] >= player["x"] + player["width"]
            assert player["width"] > 2 * details["width"]
        else:  # below it, both the page's width
            assert details["y"] >= player["y"] + player["height"]
            assert player["width"] == details["width"]
        chart = _box(page, "#views-chart canvas")
        assert chart["width"] <= _box(page, "#views-chart")["width"]
        _shoot(page, f"player-{screen}")

        page.goto(f"{served.base}/upload")
        assert _box(page, "input[name=title]")["width"] <= size["width"] - 32
        _shoot(page, f"upload-{screen}")

        page.goto(f"{served.base}/ops")
        _shoot(page, f"ops-{screen}")
        # no page is wider than the screen (nothing to scroll sideways)
        for path in ("/", f"/videos/{served.video_id}", "/upload", "/ops"):
            page.goto(f"{served.base}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= size["width"], path
    finally:
        context.close()
    assert errors == []
