"""Drawing an app's topology: as text for a terminal and as a self-contained SVG document.

``to_text`` lists the services by layer as ``ins ─▶ [service] ─▶ outs`` lines, then a table of
the streams. ``to_svg`` draws services as rounded boxes in columns by layer, streams as arrows
labelled with their names (from a small open circle when nothing in the app writes the
stream, to a dot when nothing reads it), stores as cylinders below. Both take the model from
``topology(app)``; the platform streams are drawn only with ``include_platform``.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from millstream.observe._topology import Node, topology
from millstream.service._app import App

__all__ = ["to_svg", "to_text"]


def _rank(node: Node) -> int:
    """A service's column, from 1: layers 1, 3, 5 ... are ranks 1, 2, 3 ..."""
    return ((node.layer or 0) + 1) // 2


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


# -- text ---------------------------------------------------------------------------------------

_ARROW = " ─▶ "


def to_text(app: App, *, include_platform: bool = False) -> str:
    """The topology for a terminal: services by layer as ``ins ─▶ [service] ─▶ outs`` lines
    (marks, description and stores below each), then a table of the streams."""
    topo = topology(app, include_platform=include_platform)
    services, streams = topo.of_kind("service"), topo.of_kind("stream")
    stores = topo.of_kind("store")
    lines = [f"{app.name}: {_plural(len(services), 'service')}, "
             f"{_plural(len(streams), 'stream')}, {_plural(len(stores), 'store')}"]
    for rank in sorted({_rank(n) for n in services}):
        lines += ["", f"layer {rank}"]
        for n in (n for n in services if _rank(n) == rank):
            line = "  " + ", ".join(topo.ends(n.id, "input", incoming=True)) + _ARROW
            line += f"[{n.name}]"
            outs = topo.ends(n.id, "output", incoming=False)
            if outs:
                line += _ARROW + ", ".join(outs)
            if n.detail:
                line += f"  ({n.detail})"
            lines.append(line)
            if n.description:
                lines.append(f"      {n.description}")
            uses = topo.ends(n.id, "uses", incoming=False)
            if uses:
                lines.append(f"      uses {', '.join(uses)}")
    if streams:
        rows = [("stream", "payload", "written by", "read by")]
        rows += [(s.name, s.detail,
                  ", ".join(topo.ends(s.id, "output", incoming=True)) or "—",
                  ", ".join(topo.ends(s.id, "input", incoming=False)) or "—")
                 for s in streams]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines.append("")
        lines += ["  " + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)),
                                    r[3]]).rstrip()
                  for r in rows]
    return "\n".join(lines) + "\n"


# -- SVG ----------------------------------------------------------------------------------------

_MARGIN = 24
_TITLE_H = 40
_VGAP = 28
_PORT_GAP = 18
_CHAR_NAME = 8.0  # rough advance of one character of a 13 px bold name
_CHAR_LABEL = 6.6  # ... of an 11 px label
_ANCHOR_H = 20
_STORE_H = 54
_STORE_RY = 8
_LANE_GAP = 18

_STYLE = """
text { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; fill: #1f2933; }
.title { font-size: 16px; font-weight: 600; }
rect.service { fill: #eef4fb; stroke: #4a6fa5; stroke-width: 1.5; }
rect.stateful { fill: #fdf3e3; stroke: #b7791f; }
rect.exactly-once { stroke-width: 3; }
.service-name { font-size: 13px; font-weight: 600; }
.marks, .stream-label, .halo, .store-name { font-size: 11px; }
.marks { fill: #6b7785; }
path.stream { fill: none; stroke: #5b6b7c; stroke-width: 1.4; }
.platform path.stream { stroke: #b0b8c1; stroke-dasharray: 4 3; }
.halo { fill: #ffffff; stroke: #ffffff; stroke-width: 4px; stroke-linejoin: round; }
circle.source { fill: #ffffff; stroke: #5b6b7c; stroke-width: 1.4; }
circle.sink { fill: #5b6b7c; }
path.store { fill: #eef7ee; stroke: #3f7d4e; stroke-width: 1.5; }
line.uses { stroke: #3f7d4e; stroke-width: 1.2; stroke-dasharray: 3 3; }
circle.uses { fill: #3f7d4e; }
"""


@dataclass(slots=True)
class _Box:
    """A laid-out service box or stream anchor (anchors have width 0)."""

    key: str
    column: int
    order: int
    width: float
    height: float
    x: float = 0.0
    y: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


def _n(value: float) -> str:
    return f"{round(value, 1):g}"


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def to_svg(app: App, *, include_platform: bool = False, title: str | None = None) -> str:
    """A self-contained SVG document of the topology (``title`` defaults to the app's name).

    Each service is a ``<g class="service" data-service=…>`` holding one ``<rect>``; each
    drawn arrow a ``<g class="edge" data-stream=… data-from=… data-to=…>`` with its path and
    label; each store a ``<g class="store" data-store=…>`` with a cylinder ``<path>``. A
    stream is one arrow per (writer, reader) pair; a stream nothing reads or writes is not
    drawn."""
    topo = topology(app, include_platform=include_platform)
    services, streams = topo.of_kind("service"), topo.of_kind("stream")
    stores = topo.of_kind("store")
    text_title = title if title is not None else app.name

    # Boxes: services, plus anchors for streams that enter or leave the app.
    boxes: dict[str, _Box] = {}
    inputs = {n.id: topo.ends(n.id, "input", incoming=True) for n in services}
    outputs = {n.id: topo.ends(n.id, "output", incoming=False) for n in services}
    for i, n in enumerate(services):
        width = max(128.0, _CHAR_NAME * len(n.name) + 32, _CHAR_LABEL * len(n.detail) + 24)
        ports = max(len(inputs[n.id]), len(outputs[n.id]))
        height = max(52.0 if n.detail else 44.0, _PORT_GAP * ports + 14)
        boxes[n.id] = _Box(n.id, _rank(n), i, width, height)
    arrows: list[tuple[Node, str, str]] = []  # (stream, from box, to box)
    for i, s in enumerate(streams):
        writers = [f"service:{w}" for w in topo.ends(s.id, "output", incoming=True)]
        readers = [f"service:{r}" for r in topo.ends(s.id, "input", incoming=False)]
        if not writers and not readers:
            continue
        if not writers:
            writers = [f"source:{s.name}"]
            boxes[writers[0]] = _Box(writers[0], 0, i, 0.0, _ANCHOR_H)
        if not readers:
            readers = [f"sink:{s.name}"]
            column = max(boxes[w].column for w in writers) + 1
            boxes[readers[0]] = _Box(readers[0], column, len(services) + i, 0.0, _ANCHOR_H)
        arrows += [(s, w, r) for w in writers for r in readers]

    # Columns: order each by the mean position of what feeds it (one barycentre sweep).
    columns: dict[int, list[_Box]] = {}
    for box in boxes.values():
        columns.setdefault(box.column, []).append(box)
    feeds: dict[str, list[str]] = {}
    for _, w, r in arrows:
        feeds.setdefault(r, []).append(w)
    place: dict[str, float] = {}
    for c in sorted(columns):
        def centre(box: _Box, c: int = c) -> tuple[float, int]:
            before = [place[w] for w in feeds.get(box.key, ()) if boxes[w].column < c]
            return (sum(before) / len(before) if before else float("inf"), box.order)

        columns[c].sort(key=centre)
        place.update({b.key: (i + 0.5) / len(columns[c]) for i, b in enumerate(columns[c])})

    # Arrows that skip a column run along lanes above the boxes, backward ones (cycles) below.
    spans = {(w, r): boxes[r].column - boxes[w].column for _, w, r in arrows}
    over = sorted((a for a in arrows if spans[a[1], a[2]] > 1),
                  key=lambda a: spans[a[1], a[2]])
    under = [a for a in arrows if spans[a[1], a[2]] < 1]
    longest = max((len(s.name) for s in streams), default=0)
    gap = max(120.0, _CHAR_LABEL * longest + 48)
    tallest = max((sum(b.height for b in col) + _VGAP * (len(col) - 1)
                   for col in columns.values()), default=0.0)
    x = float(_MARGIN)
    top = _MARGIN + _TITLE_H + _LANE_GAP * len(over)
    for c in sorted(columns):
        col = columns[c]
        width = max(b.width for b in col)
        y = top + (tallest - sum(b.height for b in col) - _VGAP * (len(col) - 1)) / 2
        for b in col:
            b.x, b.y = x + (width - b.width) / 2, y
            y += b.height + _VGAP
        x += width + gap
    right = x - gap if columns else float(_MARGIN)
    bottom = top + tallest
    lanes = {(s.name, w, r): min(b.y for b in boxes.values()) - _LANE_GAP * (i + 1)
             for i, (s, w, r) in enumerate(over)}
    lanes.update({(s.name, w, r): bottom + _LANE_GAP * (i + 1)
                  for i, (s, w, r) in enumerate(under)})

    def port(key: str, stream: str, *, out: bool) -> tuple[float, float]:
        box = boxes[key]
        if box.width == 0:
            return box.cx, box.cy
        names = outputs[key] if out else inputs[key]
        y = box.y + box.height * (names.index(stream) + 1) / (len(names) + 1)
        return (box.x + box.width, y) if out else (box.x, y)

    edge_parts: list[str] = []
    for s, w, r in arrows:
        (sx, sy), (tx, ty) = port(w, s.name, out=True), port(r, s.name, out=False)
        lane = lanes.get((s.name, w, r))
        if lane is None:  # to the next column
            h = (tx - sx) / 2
            d = f"M{_n(sx)},{_n(sy)} C{_n(sx + h)},{_n(sy)} {_n(tx - h)},{_n(ty)} {_n(tx)},{_n(ty)}"
            lx, ly = (sx + tx) / 2, (sy + ty) / 2 - 5
        elif spans[w, r] > 1:  # up into the gap, along the lane, down into the target
            h = gap / 2
            d = (f"M{_n(sx)},{_n(sy)} C{_n(sx + h / 2)},{_n(sy)} {_n(sx + h / 2)},{_n(lane)} "
                 f"{_n(sx + h)},{_n(lane)} L{_n(tx - h)},{_n(lane)} C{_n(tx - h / 2)},"
                 f"{_n(lane)} {_n(tx - h / 2)},{_n(ty)} {_n(tx)},{_n(ty)}")
            lx, ly = (sx + tx) / 2, lane - 4
        else:  # out to the right, back along the lane below, in from the left
            d = (f"M{_n(sx)},{_n(sy)} C{_n(sx + 40)},{_n(sy)} {_n(sx + 40)},{_n(lane)} "
                 f"{_n(sx)},{_n(lane)} L{_n(tx)},{_n(lane)} C{_n(tx - 40)},{_n(lane)} "
                 f"{_n(tx - 40)},{_n(ty)} {_n(tx)},{_n(ty)}")
            lx, ly = (sx + tx) / 2, lane - 4
        classes = "edge platform" if s.platform else "edge"
        ends = [f'<circle class="source" cx="{_n(sx)}" cy="{_n(sy)}" r="4"/>'
                if w.startswith("source:") else "",
                f'<circle class="sink" cx="{_n(tx)}" cy="{_n(ty)}" r="4"/>'
                if r.startswith("sink:") else ""]
        at = f'x="{_n(lx)}" y="{_n(ly)}" text-anchor="middle"'
        edge_parts.append(
            f'<g class="{classes}" data-stream="{_attr(s.name)}" '
            f'data-from="{_attr(w)}" data-to="{_attr(r)}">'
            f"<title>{escape(f'{s.name}: {s.detail}')}</title>"
            f'<path class="stream" d="{d}" marker-end="url(#arrow)"/>{"".join(ends)}'
            f'<text class="halo" {at}>{escape(s.name)}</text>'
            f'<text class="stream-label" {at}>{escape(s.name)}</text></g>'
        )

    # Stores: a row of cylinders under their users, pushed apart where they would overlap.
    store_top = bottom + _LANE_GAP * len(under) + 56
    store_parts: list[str] = []
    use_parts: list[str] = []
    wanted: list[tuple[float, int, Node, float]] = []
    for i, st in enumerate(stores):
        users = [boxes[f"service:{u}"] for u in topo.ends(st.id, "uses", incoming=True)]
        width = max(84.0, _CHAR_LABEL * len(st.name) + 28)
        wanted.append((sum(u.cx for u in users) / len(users) - width / 2, i, st, width))
    edge_x = float(_MARGIN)
    for left, _, st, width in sorted(wanted, key=lambda w: (w[0], w[1])):
        left = max(left, edge_x)
        edge_x = left + width + 24
        right = max(right, left + width)
        rx = width / 2
        straight = _STORE_H - 2 * _STORE_RY
        d = (f"M{_n(left)},{_n(store_top + _STORE_RY)} a{_n(rx)},{_STORE_RY} 0 0,0 {_n(width)},0 "
             f"a{_n(rx)},{_STORE_RY} 0 0,0 {_n(-width)},0 v{straight} "
             f"a{_n(rx)},{_STORE_RY} 0 0,0 {_n(width)},0 v{-straight}")
        store_parts.append(
            f'<g class="store" data-store="{_attr(st.name)}">'
            f"<title>{escape(f'store {st.name}')}</title><path class=\"store\" d=\"{d}\"/>"
            f'<text class="store-name" x="{_n(left + rx)}" '
            f'y="{_n(store_top + _STORE_H / 2 + 8)}" text-anchor="middle">'
            f"{escape(st.name)}</text></g>"
        )
        for user in topo.ends(st.id, "uses", incoming=True):
            box = boxes[f"service:{user}"]
            use_parts.append(  # over the boxes: one it crosses is plainly not its end
                f'<line class="uses" data-service="{_attr(user)}" data-store="{_attr(st.name)}" '
                f'x1="{_n(box.cx)}" y1="{_n(box.y + box.height)}" x2="{_n(left + rx)}" '
                f'y2="{_n(store_top)}"/><circle class="uses" cx="{_n(box.cx)}" '
                f'cy="{_n(box.y + box.height)}" r="2.5"/>'
            )
    height = (store_top + _STORE_H if stores else bottom + _LANE_GAP * len(under)) + _MARGIN

    service_parts: list[str] = []
    for n in services:
        box = boxes[n.id]
        spec = app.services[n.name]
        classes = " ".join(["service", *(["stateful"] if spec.stateful else []),
                            *(["exactly-once"] if spec.exactly_once else [])])
        tip = f"{n.name} — {n.description}" if n.description else n.name
        name_y = box.cy - 2 if n.detail else box.cy + 5
        marks = (f'<text class="marks" x="{_n(box.cx)}" y="{_n(box.cy + 14)}" '
                 f'text-anchor="middle">{escape(n.detail.replace(", ", " · "))}</text>'
                 if n.detail else "")
        service_parts.append(
            f'<g class="service" data-service="{_attr(n.name)}"><title>{escape(tip)}</title>'
            f'<rect class="{classes}" x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.width)}" '
            f'height="{_n(box.height)}" rx="8"/>'
            f'<text class="service-name" x="{_n(box.cx)}" y="{_n(name_y)}" '
            f'text-anchor="middle">{escape(n.name)}</text>{marks}</g>'
        )

    width = max(right, _MARGIN + _CHAR_NAME * len(text_title)) + _MARGIN
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}">',
        f"<title>{escape(text_title)}</title>",
        f"<style>{_STYLE}</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#5b6b7c"/>'
        "</marker></defs>",
        f'<text class="title" x="{_MARGIN}" y="{_MARGIN + 14}">{escape(text_title)}</text>',
        *service_parts,
        *store_parts,
        *use_parts,
        *edge_parts,
        "</svg>",
    ]) + "\n"
