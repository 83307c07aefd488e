"""The Overview page in headless Chromium, over a real system: three services in a
``TestPlatform`` on the system clock writing metrics every second — one working, one whose
handler raises on every record, one stopped — fed by a producer whose pace changes. The page
shows every service and stream, an edge's label shows the rate its service's latest record
gives, the raising service is "erroring" and the stopped one "stopped", and the rates move
without a reload. Also: ``millstream graph --svg`` of the video site, measured in the browser:
no two texts overlap and each sits inside its box."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from millstream.cli.main import cli
from millstream.console._pages._overview import MAX_WIDTH, Overview, ServiceRow
from millstream.console._render import fmt_rate
from millstream.observe import topology, topology_from_metrics
from millstream.observe._svg import topology_svg
from millstream.runtime import MetricsRecord
from millstream.runtime._clock import SystemClock
from millstream.service import App, RetryPolicy
from millstream.testing import TestPlatform
from tests.console._serving import SCREENSHOTS, Served, screenshot, served_console
from tests.observe.test_layout import assert_clean
from videosite.app import app as video


class Order(BaseModel):
    id: int
    amount: int


app = App("shop", partitions=2)


@app.service(inputs={"orders": Order}, outputs={"checked": Order})
def check(order: Order) -> Order:
    """Pass the orders on."""
    return order


@app.service(inputs={"checked": Order}, outputs={"audited": Order},
             retry=RetryPolicy(attempts=1))
def audit(order: Order) -> Order:
    raise ValueError(f"order {order.id} cannot be audited")


@app.service(inputs={"checked": Order}, outputs={"archived": Order}, uses=["files"])
def archive(order: Order) -> Order:
    return order


SERVICES = {"check", "audit", "archive"}
STREAMS = {"orders", "checked", "audited", "archived"}

#: what the page's script can measure: every text's box, and the box of the node it is in
MEASURE = """() => {
  const r = (el) => { const b = el.getBoundingClientRect();
                      return [b.left, b.top, b.right, b.bottom]; };
  return Array.from(document.querySelectorAll("svg.topology text")).filter(
      (t) => !t.classList.contains("title")).map((t) => {
    const owner = t.closest(".node") || t.closest(".label");
    const box = owner ? owner.querySelector("rect") : null;
    return { text: t.textContent, at: r(t), box: box ? r(box) : null,
             owner: owner ? (owner.dataset.id || owner.parentNode.dataset.id) : null };
  });
}"""


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_texts_fit(texts: list[dict[str, Any]]) -> None:
    """Every text inside its box; no two texts of different owners overlapping."""
    for t in texts:
        assert t["box"] is not None, t
        x0, y0, x1, y1 = t["at"]
        assert (t["box"][0] <= x0 and x1 <= t["box"][2] and t["box"][1] <= y0
                and y1 <= t["box"][3]), t
    clashes = [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1:]
               if a["owner"] != b["owner"] and overlap(a["at"], b["at"])]
    assert clashes == []


class Orders(threading.Thread):
    """Sends orders until stopped, alternating between a fast and a slow pace every second
    so that each interval's rate differs from the last."""

    def __init__(self, platform: TestPlatform) -> None:
        super().__init__(daemon=True)
        self.platform = platform
        self.done = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.done.is_set():
            self.platform.send("orders", Order(id=self.sent, amount=self.sent % 90),
                               key=str(self.sent))
            self.sent += 1
            self.done.wait(0.02 if int(time.time()) % 2 else 0.07)


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[TestPlatform, Served]]:
    with TestPlatform(app, clock=SystemClock(), metrics_interval_s=1.0) as platform:
        orders = Orders(platform)
        orders.start()
        try:
            platform.start("check")
            platform.start("audit")
            archive_run = platform.start("archive")
            platform.wait_until(lambda: len(platform.metrics("archive")) >= 2, timeout=20)
            archive_run.stop()  # a clean stop: its last record is final
            with served_console(platform, token=None) as served:
                history = served.app.state.console.history
                platform.wait_until(
                    lambda: {r.service for r in history.records()} == SERVICES
                    and any(r.interval.exceptions for r in history.records("shop.audit")),
                    timeout=20)
                yield platform, served
        finally:
            orders.done.set()
            orders.join(5)


def check_rate(served: Served) -> str:
    """The orders → check rate the latest record of check's running instance gives."""
    history = served.app.state.console.history
    (newest,) = [r for r in history.latest()["shop.check"] if not r.final]
    return fmt_rate(newest.streams_in.get("orders", 0) * 1000.0 / newest.interval_ms)


def label(page: Any, edge: str) -> str:
    text: str = page.locator(f'[data-id="{edge}"] .rate').text_content()
    return text


def test_the_overview_shows_the_running_system_live(page: Any,
                                                    system: tuple[TestPlatform, Served]
                                                    ) -> None:
    _platform, served = system
    page.goto(f"{served.url}/")
    page.wait_for_selector("[data-live-status].ok")
    names = page.eval_on_selector_all(
        "svg.topology .node", "gs => gs.map(g => [g.dataset.kind, g.dataset.name])")
    assert sorted(n for k, n in names if k == "service") == sorted(SERVICES)
    assert sorted(n for k, n in names if k == "stream") == sorted(STREAMS)
    assert sorted(n for k, n in names if k == "store") == ["files"]
    edges = page.eval_on_selector_all("svg.topology .edge", "gs => gs.map(g => g.dataset.id)")
    assert sorted(edges) == sorted([
        "stream:orders>service:check", "service:check>stream:checked",
        "stream:checked>service:audit", "service:audit>stream:audited",
        "stream:checked>service:archive", "service:archive>stream:archived",
        "service:archive>store:files"])

    # health: the raising service is erroring, the stopped one stopped, the other running
    def health(name: str) -> tuple[str, str]:
        node = page.locator(f'svg.topology [data-id="service:{name}"]')
        classes = node.get_attribute("class").split()
        return (next(c for c in classes if c.startswith("health-")),
                node.locator(".badge-text").text_content())

    page.wait_for_function("""() => document.querySelector(
        'svg.topology [data-id="service:audit"]').classList.contains('health-erroring')""")
    assert health("audit") == ("health-erroring", "erroring")
    assert health("archive") == ("health-stopped", "stopped")
    assert health("check") == ("health-running", "running")
    rows = page.eval_on_selector_all(
        "#services tbody tr",
        "trs => trs.map(tr => [tr.dataset.service, tr.querySelector('.badge').textContent])")
    assert sorted(map(tuple, rows)) == [("archive", "stopped"), ("audit", "erroring"),
                            ("check", "running")]
    # a stopped service has no rate; records flowing are drawn so
    assert label(page, "stream:checked>service:archive") == "–"
    flowing = page.eval_on_selector_all("svg.topology .edge.flowing",
                                        "gs => gs.map(g => g.dataset.id)")
    assert "stream:orders>service:check" in flowing
    assert "stream:checked>service:archive" not in flowing
    # a service opens its page, a stream its own
    links = page.eval_on_selector_all(
        "svg.topology a", "as => as.map(a => [a.querySelector('.node').dataset.id, "
                          "a.getAttribute('href')])")
    assert sorted(map(tuple, links)) == [
        ("service:archive", "/services/shop.archive"), ("service:audit", "/services/shop.audit"),
        ("service:check", "/services/shop.check"), ("stream:archived", "/streams/archived"),
        ("stream:audited", "/streams/audited"), ("stream:checked", "/streams/checked"),
        ("stream:orders", "/streams/orders")]

    # the edge's label is the rate of check's latest record: read what the page shows until
    # the history's newest record and the page agree (both move every second; a loaded
    # machine may take a while: the loop ends as soon as they do)
    deadline = time.monotonic() + 40
    while True:
        shown, expected = label(page, "stream:orders>service:check"), check_rate(served)
        if shown == expected and expected not in ("0/s", "–"):
            break
        assert time.monotonic() < deadline, (shown, expected)
        time.sleep(0.2)

    # live: the labels change while the page stays the same document
    page.evaluate("() => { window.notReloaded = 42; }")
    seen, stamps = set(), set()
    deadline = time.monotonic() + 40  # ends once three of each were seen (about 6 s)
    while time.monotonic() < deadline and (len(seen) < 3 or len(stamps) < 3):
        seen.add(label(page, "stream:orders>service:check"))
        stamps.add(page.get_attribute("#graph", "data-updated"))
        time.sleep(0.25)
    assert len(seen) >= 3 and len(stamps) >= 3, (seen, stamps)
    assert page.evaluate("() => window.notReloaded") == 42

    assert_texts_fit(page.evaluate(MEASURE))
    page.wait_for_timeout(300)
    screenshot(page, "overview")

    # a click on a service opens its page
    page.click('svg.topology [data-id="service:check"]')
    page.wait_for_url(f"{served.url}/services/shop.check")


def test_the_api_answers_the_rates_and_health_and_the_drawing_when_it_changed(
        system: tuple[TestPlatform, Served]) -> None:
    _, served = system
    answer = httpx2.get(f"{served.url}/api/overview", timeout=10).json()
    assert set(answer["services"]) == SERVICES
    assert {name: s["health"] for name, s in answer["services"].items()} == {
        "check": "running", "audit": "erroring", "archive": "stopped"}
    assert answer["apps"] == "shop"
    topo = topology_from_metrics(served.app.state.console.history.records())
    assert set(answer["edges"]) == {f"{e.source}>{e.target}" for e in topo.edges
                                    if e.kind != "uses"}
    for edge in answer["edges"].values():
        assert edge["text"] == fmt_rate(edge["rate"])
    assert answer["edges"]["stream:checked>service:archive"] == {"rate": None, "text": "–"}
    assert answer["graph"].startswith('<svg xmlns="http://www.w3.org/2000/svg" class="topology"')
    same = httpx2.get(f"{served.url}/api/overview",
                      params={"have": answer["signature"]}, timeout=10).json()
    assert "graph" not in same and same["signature"] == answer["signature"]


def test_the_video_sites_graph_has_no_overlapping_labels_in_the_browser(page: Any) -> None:
    result = CliRunner().invoke(cli, ["graph", "videosite.app:app", "--svg", "-"])
    assert result.exit_code == 0, result.output
    page.set_content(f"<!doctype html><html><body>{result.stdout}</body></html>")
    texts = page.evaluate(MEASURE)
    assert {t["text"] for t in texts} >= {"probe", "transcode", "views-hourly", "uploads",
                                          "titled-views", "tables:videos"}
    assert_texts_fit(texts)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 2000, "height": 700})
    page.locator("svg").screenshot(path=str(SCREENSHOTS / "graph.png"))


def test_a_graph_too_wide_for_the_page_is_drawn_top_to_bottom_and_stays_clean() -> None:
    records = [MetricsRecord(
        group=s.group, instance="h:1", time_ms=1, app=video.name, service=s.name,
        inputs=s.inputs, outputs=s.outputs,
        stores=tuple(dict.fromkeys([*s.uses, *(f"tables:{t.name}" for t in s.tables)])))
        for s in video.services.values()]
    topo = topology_from_metrics(records)
    declared = topology(video)
    assert {e for e in topo.edges} == {e for e in declared.edges
                                       if "millstream.metrics" not in e.source}
    rows = {name: ServiceRow(name, video.name, f"videosite.{name}", "running", 1, 1, 2.0, 2.0,
                             0, 0, 0) for name in video.services}
    view = Overview(1, topo, rows, {e: 1234.5 for e in topo.edges if e.kind != "uses"})
    root = ET.fromstring(view.svg())
    # left to right it would be wider than the page: it is drawn top to bottom
    wide = ET.fromstring(topology_svg(topo, rates={e: "1.2K/s" for e in topo.edges},
                                      standalone=False))
    assert float(root.get("width", "0")) <= MAX_WIDTH < float(wide.get("width", "0"))
    boxes = {g.get("data-id"): g.find("{http://www.w3.org/2000/svg}rect")
             for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-id")}
    probe, join = (boxes[f"service:{n}"] for n in ("probe", "join"))
    assert probe is not None and join is not None
    assert float(probe.get("y", "0")) + float(probe.get("height", "0")) < float(join.get("y", "0"))
    rates = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")
             if t.get("class") == "rate"]
    assert rates == ["1.2K/s"] * sum(e.kind != "uses" for e in topo.edges)
    assert_clean(root)


def test_before_any_service_reports_the_page_says_how_to_start_them() -> None:
    with TestPlatform(App("quiet"), clock=SystemClock()) as platform, \
            served_console(platform, token=None) as served:
        page = httpx2.get(f"{served.url}/", timeout=10)
        answer = httpx2.get(f"{served.url}/api/overview", timeout=10).json()
    assert page.status_code == 200
    assert "No service has written metrics in the last 60 minutes" in page.text
    assert (answer["services"], answer["edges"], answer["apps"]) == ({}, {}, "")
    root = ET.fromstring(answer["graph"])
    assert [g for g in root.iter("{http://www.w3.org/2000/svg}g")
            if "node" in g.get("class", "").split()] == []
