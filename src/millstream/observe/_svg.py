"""A topology as SVG, drawn from its layout (``_layout``): what ``millstream graph --svg``
writes and the console's Overview shows.

Services are rounded boxes (their marks beneath the name, and with ``health`` a badge),
streams are pills with their name in monospace (and payload and partitions beneath when
known), stores are cylinders; an input or output is an arrow, a store's use a dashed line.
Each box is as wide as its text, measured with the widths of DejaVu Sans / Verdana (the
widest of the usual fonts, which the style names first), so a label fits its box; with
``rates`` every arrow gets a label box of its own in the layout, wide enough for any rate.

Every node is a ``<g class="node <kind> …" data-id="<kind>:<name>">`` holding one ``<rect>``
(its box), and every edge a ``<g class="edge <kind>" data-id="<source id>><target id>"
data-from=… data-to=…>`` holding its ``<path>`` and, with ``rates``, a ``<g class="label">``
with its ``<rect>`` and ``<text class="rate">`` — the hooks a page's script and the tests
use. ``standalone`` documents carry their style and a title; embedded in a page (whose CSP
forbids inline style) they carry neither, and the page's stylesheet styles the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from xml.sax.saxutils import escape

from millstream.observe._layout import Box, Direction, Layout, Point, edge_id, layout
from millstream.observe._topology import Edge, Node, Topology

__all__ = ["STYLE", "text_width", "topology_svg"]

#: the widest rate text a label is made for (``fmt_rate``: "999/s", "999.9K/s")
WIDEST_RATE = "999.9K/s"
_TITLE_H = 36.0
_NAME_PX, _MARKS_PX, _STREAM_PX, _DETAIL_PX, _LABEL_PX = 13.0, 11.0, 12.0, 10.0, 11.0

_NARROW = frozenset("ijlI.,:;'!|· ")
_MEDIUM = frozenset("frt()[]/-_")
_WIDE = frozenset("mwMW%#@")


def text_width(text: str, px: float, *, bold: bool = False, mono: bool = False) -> float:
    """The width of ``text`` at ``px`` pixels, a little over what DejaVu Sans (bold) or
    DejaVu Sans Mono draw (Verdana and Menlo match them; most other fonts are narrower)."""
    if mono:
        return len(text) * 0.61 * px
    em = sum(0.36 if c in _NARROW else 0.5 if c in _MEDIUM else 1.0 if c in _WIDE
             else 0.76 if c.isupper() else 0.64 for c in text)
    return em * px * (1.1 if bold else 1.0)


STYLE = """
svg.topology text { font-family: "DejaVu Sans", Verdana, system-ui, sans-serif; fill: #1f2933; }
svg.topology .title { font-size: 16px; font-weight: 700; }
svg.topology .node rect { stroke-width: 1.5; }
svg.topology .service rect.box { fill: #eef4fb; stroke: #4a6fa5; }
svg.topology .service.stateful rect.box { fill: #fdf3e3; stroke: #b7791f; }
svg.topology .service.exactly-once rect.box { stroke-width: 3; }
svg.topology .service .name { font-size: 13px; font-weight: 700; }
svg.topology .marks { font-size: 11px; fill: #61707f; }
svg.topology .stream rect.box { fill: #ffffff; stroke: #7b8794; }
svg.topology .stream.platform rect.box { stroke-dasharray: 4 3; fill: #f5f7fa; }
svg.topology .stream .name { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
svg.topology .stream .detail { font-size: 10px; fill: #61707f; }
svg.topology .store rect.box { fill: #eef7ee; stroke: #3f7d4e; }
svg.topology .store path.lip { fill: none; stroke: #3f7d4e; stroke-width: 1.5; }
svg.topology .store .name { font-size: 11px; font-weight: 700; fill: #25543a; }
svg.topology .edge path.route { fill: none; stroke: #7b8794; stroke-width: 1.5; }
svg.topology .edge.uses path.route { stroke: #3f7d4e; stroke-width: 1.2; stroke-dasharray: 3 3; }
svg.topology .edge.platform path.route { stroke: #b0b8c1; stroke-dasharray: 4 3; }
svg.topology .label rect { fill: #ffffff; stroke: #dde3ea; }
svg.topology .label .rate { font-size: 11px; fill: #3e4c59; }
svg.topology .badge rect { fill: #e2e8f0; }
svg.topology .badge text { font-size: 11px; font-weight: 700; fill: #475569; }
"""


def _n(value: float) -> str:
    return f"{round(value, 1):g}"


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _rect(box: Box, cls: str, radius: float) -> str:
    return (f'<rect class="{cls}" x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.width)}" '
            f'height="{_n(box.height)}" rx="{_n(radius)}"/>')


def _text(cls: str, x: float, y: float, text: str) -> str:
    return (f'<text class="{cls}" x="{_n(x)}" y="{_n(y)}" text-anchor="middle">'
            f"{escape(text)}</text>")


def _marks(node: Node) -> str:
    return node.detail.replace(", ", " · ")


def _badge_width(health: Mapping[str, str]) -> float:
    words = ["erroring", "stalled", "running", "stopped", "silent", *health.values()]
    return max(text_width(w, _MARKS_PX, bold=True) for w in words) + 16


def _size(node: Node, health: Mapping[str, str] | None) -> tuple[float, float]:
    if node.kind == "service":
        widths = [text_width(node.name, _NAME_PX, bold=True)]
        height = 34.0
        if node.detail:
            widths.append(text_width(_marks(node), _MARKS_PX))
            height += 14
        if health is not None:
            widths.append(_badge_width(health))
            height += 24
        return max(max(widths) + 28, 110.0), height
    if node.kind == "stream":
        widths = [text_width(node.name, _STREAM_PX, mono=True)]
        if node.detail:
            widths.append(text_width(node.detail, _DETAIL_PX))
        return max(max(widths) + 28, 72.0), 42.0 if node.detail else 30.0
    return max(text_width(node.name, _MARKS_PX, bold=True) + 28, 80.0), 46.0


def topology_svg(topo: Topology, *, title: str | None = None, standalone: bool = True,
                 rates: Mapping[Edge, str] | None = None,
                 health: Mapping[str, str] | None = None,
                 links: Mapping[str, str] | None = None,
                 direction: Direction = "LR") -> str:
    """``topo`` as SVG. ``rates``: label every input and output edge (with the text given,
    "–" where none); ``health``: each service's health word as a badge (and class
    ``health-<word>``), "silent" where none; ``links``: node id → the address a click on
    the node opens. ``standalone``: a document with its own style and ``title`` (default:
    the app's name)."""
    labels = None
    if rates is not None:
        widest = max([WIDEST_RATE, *rates.values()], key=lambda t: text_width(t, _LABEL_PX))
        box = (text_width(widest, _LABEL_PX) + 12, 18.0)
        labels = {e: box for e in topo.edges if e.kind != "uses"}
    laid = layout(topo, lambda n: _size(n, health), labels=labels, direction=direction)
    top = _TITLE_H if standalone else 0.0
    width, height = laid.width, laid.height + top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{_n(width)}" '
             f'height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}">']
    name = title if title is not None else topo.app
    parts.append(f"<title>{escape(name)}</title>")
    if standalone:
        parts.append(f"<style>{STYLE}</style>")
    parts.append('<defs><marker id="ms-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
                 'markerWidth="7" markerHeight="7" orient="auto">'
                 '<path d="M0,1 L10,5 L0,9 z" fill="#7b8794"/></marker></defs>')
    if standalone:
        parts.append(f'<text class="title" x="{_n(24)}" y="{_n(26)}">{escape(name)}</text>')
    parts.append(f'<g class="graph" transform="translate(0,{_n(top)})">')
    parts.append('<g class="edges">')
    for route in laid.routes:
        parts.append(_edge(topo, route.edge, route.points, route.label, laid,
                           None if rates is None else rates.get(route.edge, "–")))
    parts.append('</g><g class="nodes">')
    for node in topo.nodes:
        drawn = _node(topo, node, laid.boxes[node.id],
                      None if health is None else health.get(node.name, "silent"))
        href = None if links is None else links.get(node.id)
        parts.append(drawn if href is None else f'<a href="{_attr(href)}">{drawn}</a>')
    parts.append("</g></g></svg>")
    return "\n".join(parts) + "\n"


def _path(points: tuple[Point, ...], across: bool) -> str:
    """A smooth path through ``points``: each step a curve leaving and entering along the
    layers' direction."""
    kept = [points[0]]  # a step of no length would turn an arrow's head any way
    for point in points[1:]:
        if abs(point[0] - kept[-1][0]) + abs(point[1] - kept[-1][1]) > 0.5:
            kept.append(point)
    x0, y0 = kept[0]
    d = [f"M{_n(x0)},{_n(y0)}"]
    for (ax, ay), (bx, by) in pairwise(kept):
        if across:
            mid = (ax + bx) / 2
            d.append(f"C{_n(mid)},{_n(ay)} {_n(mid)},{_n(by)} {_n(bx)},{_n(by)}")
        else:
            mid = (ay + by) / 2
            d.append(f"C{_n(ax)},{_n(mid)} {_n(bx)},{_n(mid)} {_n(bx)},{_n(by)}")
    return " ".join(d)


def _edge(topo: Topology, edge: Edge, points: tuple[Point, ...], label: Box | None,
          laid: Layout, rate: str | None) -> str:
    ends = [topo.node(edge.source), topo.node(edge.target)]
    classes = ["edge", edge.kind, *(["platform"] if any(n.platform for n in ends) else [])]
    stream = next((n.name for n in ends if n.kind == "stream"), "")
    service = ends[0].name if ends[0].kind == "service" else ends[1].name
    arrow = "" if edge.kind == "uses" else ' marker-end="url(#ms-arrow)"'
    out = [f'<g class="{" ".join(classes)}" data-id="{_attr(edge_id(edge))}" '
           f'data-kind="{edge.kind}" data-from="{_attr(edge.source)}" '
           f'data-to="{_attr(edge.target)}" data-service="{_attr(service)}"'
           + (f' data-stream="{_attr(stream)}"' if stream else "") + ">",
           f'<path class="route" d="{_path(points, laid.direction == "LR")}"{arrow}/>']
    if label is not None and rate is not None:
        out.append(f'<g class="label">{_rect(label, "label-box", 4)}'
                   f"{_text('rate', label.cx, label.cy + 4, rate)}</g>")
    out.append("</g>")
    return "".join(out)


def _node(topo: Topology, node: Node, box: Box, health: str | None) -> str:
    tip = node.name
    if node.kind == "service" and node.description:
        tip = f"{node.name} — {node.description}"
    elif node.kind == "stream" and node.detail:
        tip = f"{node.name}: {node.detail}"
    elif node.kind == "store":
        tip = f"store {node.name}" + (f" — {node.detail}" if node.detail else "")
    classes = ["node", node.kind]
    body: list[str] = []
    if node.kind == "service":
        classes += [m for m in node.detail.split(", ") if m]
        if health is not None:
            classes.append(f"health-{health}")
        body.append(_rect(box, "box", 8))
        lines = 1 + bool(node.detail)
        name_y = box.y + 22
        body.append(_text("name", box.cx, name_y, node.name))
        if node.detail:
            body.append(_text("marks", box.cx, name_y + 15, _marks(node)))
        if health is not None:
            bw, by = box.width - 28, box.y + 10 + 16 * lines + 4
            pill = Box(box.cx - bw / 2, by, bw, 18)
            body.append(f'<g class="badge">{_rect(pill, "badge-box", 9)}'
                        f"{_text('badge-text', pill.cx, pill.cy + 4, health)}</g>")
    elif node.kind == "stream":
        if node.platform:
            classes.append("platform")
        if not topo.ends(node.id, "output", incoming=True):
            classes.append("source")
        if not topo.ends(node.id, "input", incoming=False):
            classes.append("sink")
        body.append(_rect(box, "box", 15))
        if node.detail:
            body.append(_text("name", box.cx, box.y + 18, node.name))
            body.append(_text("detail", box.cx, box.y + 33, node.detail))
        else:
            body.append(_text("name", box.cx, box.cy + 4, node.name))
    else:
        body.append(_rect(box, "box", 10))
        lip = box.y + 10
        body.append(f'<path class="lip" d="M{_n(box.x)},{_n(lip)} Q{_n(box.cx)},{_n(lip + 9)} '
                    f'{_n(box.x + box.width)},{_n(lip)}"/>')
        body.append(_text("name", box.cx, box.y + 32, node.name))
    return (f'<g class="{" ".join(classes)}" data-id="{_attr(node.id)}" '
            f'data-kind="{node.kind}" data-name="{_attr(node.name)}">'
            f"<title>{escape(tip)}</title>{''.join(body)}</g>")
