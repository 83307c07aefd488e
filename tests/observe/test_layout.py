"""The topology's layout (grandalf's layered layout, ``observe._layout``) and its SVG: every
node and edge drawn, no two boxes or labels overlapping, no route through a box that is not
its end, on the video site's graph and on small shapes (a cycle, separate parts, top to
bottom)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from millstream.observe import Edge, Node, Topology, to_svg, topology
from millstream.observe._layout import Box, layout
from millstream.observe._svg import text_width, topology_svg
from millstream.service import App
from videosite.app import app as video_app

SVG = "{http://www.w3.org/2000/svg}"
Rect = tuple[float, float, float, float]

VIDEO_SERVICES = {"probe", "thumbnail", "transcode", "join", "analytics", "view-titles",
                  "views-hourly"}
VIDEO_STREAMS = {"uploads", "probes", "thumbnails", "renditions", "status", "videos",
                 "millstream.metrics", "views", "titled-views", "views-hourly"}


def rect_of(element: ET.Element) -> Rect:
    return (float(element.get("x", "nan")), float(element.get("y", "nan")),
            float(element.get("width", "nan")), float(element.get("height", "nan")))


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] \
        and b[1] < a[1] + a[3]


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in g.get("class", "").split()]


def node_rects(root: ET.Element) -> dict[str, Rect]:
    out = {}
    for g in groups(root, "node"):
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        out[g.get("data-id", "")] = rect_of(rect)
    return out


def label_rects(root: ET.Element) -> dict[str, Rect]:
    out = {}
    for g in groups(root, "edge"):
        rect = g.find(f"{SVG}g[@class='label']/{SVG}rect")
        if rect is not None:
            out[g.get("data-id", "")] = rect_of(rect)
    return out


def curve_points(d: str) -> list[tuple[float, float]]:
    """Points along a path of ``M`` and cubic ``C`` steps (what ``_svg`` writes), 20 a step."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    assert d.startswith("M") and d.count("M") == 1 and (len(numbers) - 2) % 6 == 0
    x, y = numbers[0], numbers[1]
    points = [(x, y)]
    for i in range(2, len(numbers), 6):
        x1, y1, x2, y2, x3, y3 = numbers[i:i + 6]
        for step in range(1, 21):
            t = step / 20
            u = 1 - t
            points.append((u ** 3 * x + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t ** 3 * x3,
                           u ** 3 * y + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t ** 3 * y3))
        x, y = x3, y3
    return points


def inside(point: tuple[float, float], rect: Rect, margin: float = 1.0) -> bool:
    return (rect[0] + margin < point[0] < rect[0] + rect[2] - margin
            and rect[1] + margin < point[1] < rect[1] + rect[3] - margin)


def assert_clean(root: ET.Element) -> None:
    """No two boxes (nodes and labels) overlap; no route passes through a box other than
    its two ends' and its own label's."""
    boxes = {**node_rects(root), **{f"label {k}": v for k, v in label_rects(root).items()}}
    pairs = [(a, b) for i, a in enumerate(boxes) for b in list(boxes)[i + 1:]
             if overlaps(boxes[a], boxes[b])]
    assert pairs == []
    for g in groups(root, "edge"):
        path = g.find(f"{SVG}path")
        assert path is not None
        own = {g.get("data-from"), g.get("data-to"), f"label {g.get('data-id')}"}
        crossed = {name for point in curve_points(path.get("d", ""))
                   for name, rect in boxes.items() if name not in own and inside(point, rect)}
        assert crossed == set(), g.get("data-id")


def test_the_video_sites_graph_draws_every_service_and_stream_and_nothing_overlaps() -> None:
    root = ET.fromstring(to_svg(video_app))
    nodes = node_rects(root)
    names = Counter(i.split(":", 1)[0] for i in nodes)
    assert {i.split(":", 1)[1] for i in nodes if i.startswith("service:")} == VIDEO_SERVICES
    assert {i.split(":", 1)[1] for i in nodes if i.startswith("stream:")} == VIDEO_STREAMS
    assert names == Counter({"service": 7, "stream": 10, "store": 4})
    edges = Counter((g.get("data-kind"), g.get("data-from"), g.get("data-to"))
                    for g in groups(root, "edge"))
    assert edges == Counter((e.kind, e.source, e.target) for e in topology(video_app).edges)
    assert_clean(root)


def test_each_name_fits_its_box_by_the_fonts_widths() -> None:
    root = ET.fromstring(to_svg(video_app))
    for g in groups(root, "node"):
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        width = rect_of(rect)[2]
        kind = g.get("data-kind")
        for text in g.iter(f"{SVG}text"):
            cls, value = text.get("class"), text.text or ""
            px = {("service", "name"): 13, ("stream", "name"): 12,
                  ("stream", "detail"): 10}.get((kind, cls), 11)
            needed = text_width(value, px, mono=(kind, cls) == ("stream", "name"),
                                bold=cls == "name" and kind != "stream")
            assert needed + 16 <= width, (g.get("data-id"), value)


def test_with_rates_each_input_and_output_gets_a_label_that_overlaps_nothing() -> None:
    topo = topology(video_app)
    rates = {e: f"{i * 37.5:.1f}/s" for i, e in enumerate(topo.edges)}
    health = {"probe": "erroring", "join": "stalled"}
    root = ET.fromstring(topology_svg(topo, rates=rates, health=health, standalone=False))
    labels = label_rects(root)
    assert set(labels) == {f"{e.source}>{e.target}" for e in topo.edges if e.kind != "uses"}
    texts = {g.get("data-id"): [t.text for t in g.iter(f"{SVG}text")]
             for g in groups(root, "edge")}
    assert all(texts[f"{e.source}>{e.target}"] == ([] if e.kind == "uses" else [rates[e]])
               for e in topo.edges)
    badges = {g.get("data-name"): (g.get("class"), [t.text for t in g.iter(f"{SVG}text")])
              for g in groups(root, "service")}
    assert badges["probe"] == ("node service health-erroring", ["probe", "erroring"])
    assert badges["join"] == ("node service stateful health-stalled",
                              ["join", "stateful", "stalled"])
    assert badges["analytics"] == ("node service health-silent", ["analytics", "silent"])
    # embedded in a page: no style of its own (the page's CSP forbids inline style)
    assert root.find(f"{SVG}style") is None
    assert_clean(root)


def test_top_to_bottom_puts_the_layers_in_rows() -> None:
    topo = topology(video_app)
    laid = layout(topo, lambda n: (100.0, 30.0), direction="TB")
    y = {name: laid.boxes[f"service:{name}"].y for name in ("probe", "join", "views-hourly")}
    assert y["probe"] < y["join"] < y["views-hourly"]
    boxes = list(laid.boxes.values())
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    # every route starts on its source's box and ends on its target's
    for route in laid.routes:
        (x0, y0), (x1, y1) = route.points[0], route.points[-1]
        source, target = laid.boxes[route.edge.source], laid.boxes[route.edge.target]
        assert source.x <= x0 <= source.x + source.width and y0 in (source.y,
                                                                    source.y + source.height)
        assert target.x <= x1 <= target.x + target.width and y1 in (target.y,
                                                                    target.y + target.height)


def test_separate_parts_are_stacked_and_a_lone_node_is_placed() -> None:
    topo = Topology("parts", (
        Node("service", "a", 1), Node("stream", "x", 0), Node("service", "b", 1),
        Node("stream", "y", 0), Node("stream", "alone", 0)),
        (Edge("input", "stream:x", "service:a"), Edge("input", "stream:y", "service:b")))
    laid = layout(topo, lambda n: (80.0, 30.0))
    boxes = laid.boxes
    assert boxes["stream:x"].cy == boxes["service:a"].cy  # one part: one row
    assert boxes["stream:x"].y + 30 < boxes["stream:y"].y < boxes["stream:alone"].y
    assert boxes["stream:x"].x < boxes["service:a"].x
    assert (laid.width, laid.height) == (32 + 80 + 56 + 80 + 32, 32 + 3 * 30 + 2 * 32 + 32)
    assert Box(0, 0, 10, 10).overlaps(Box(9, 9, 10, 10))
    assert not Box(0, 0, 10, 10).overlaps(Box(10, 0, 10, 10))


def test_the_layout_is_the_same_every_time() -> None:
    first = to_svg(video_app)
    assert all(to_svg(video_app) == first for _ in range(3))


def test_an_app_of_one_service_with_its_stores() -> None:
    app = App("tiny")

    @app.service(inputs="in", uses=["files", "tables:t"])
    def handle(value: bytes) -> None: ...

    root = ET.fromstring(to_svg(app))
    assert set(node_rects(root)) == {"service:handle", "stream:in", "store:files",
                                     "store:tables:t"}
    assert_clean(root)
