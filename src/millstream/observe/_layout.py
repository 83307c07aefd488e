"""Laying out a topology: a box for every node and a route for every edge, placed by
grandalf's Sugiyama (layered) layout so that nothing drawn overlaps.

Each node is a box of the size the drawing asks for (from its label's width). An edge with
a label gets a box of its own on its way — a vertex of the layered graph between its ends —
so a label is placed like a node and never covers a node or another label. An edge that
spans layers passes through grandalf's dummy vertices, which keep a lane for it in every
layer it crosses; its route is the polyline from a port on its source's side through them
(and its label) to a port on its target's side, ports spread along the side in the order
the routes arrive. Layers run left to right (``"LR"``) or top to bottom (``"TB"``); a cycle
is cut where the model cut it (an edge against ``Node.layer``); separate parts of the graph
are stacked, in the order of their first node.

This is the only module that touches grandalf, which has no type hints: its objects stay
inside; what comes out is ``Layout``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from grandalf.graphs import Edge as _GEdge
from grandalf.graphs import Vertex as _GVertex
from grandalf.graphs import graph_core as _GraphCore
from grandalf.layouts import SugiyamaLayout

from millstream.observe._topology import Edge, Node, Topology

__all__ = ["Box", "Direction", "Layout", "Point", "Route", "edge_id", "layout"]

Direction = Literal["LR", "TB"]
Point = tuple[float, float]

#: space between two boxes of one layer, and between two layers
NODE_GAP = 20.0
LAYER_GAP = 56.0
#: ... when the edges have labels: every edge then crosses a layer of labels, which spaces
#: the layers of nodes already
LABELLED_LAYER_GAP = 36.0
#: space between two separate parts of the graph, and around the whole
PART_GAP = 32.0
#: how much room an edge passing through a layer keeps there (across the layer)
LANE = 4.0
#: how many sweeps grandalf makes to reduce crossings
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle: ``x``, ``y`` its top-left corner."""

    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    def overlaps(self, other: Box) -> bool:
        """True when the two share more than an edge."""
        return (self.x < other.x + other.width and other.x < self.x + self.width
                and self.y < other.y + other.height and other.y < self.y + self.height)


@dataclass(frozen=True, slots=True)
class Route:
    """Where ``edge`` is drawn: a polyline from its source's side to its target's side
    (through its label's centre, when it has one); ``label`` is the label's box."""

    edge: Edge
    points: tuple[Point, ...]
    label: Box | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """The topology laid out: each node's box by node id, each edge's route (in the
    topology's edge order), and the size of the whole (margins included)."""

    direction: Direction
    width: float
    height: float
    boxes: dict[str, Box]
    routes: tuple[Route, ...]


def edge_id(edge: Edge) -> str:
    """``<source id>><target id>`` — unique in one topology (``stream:orders>service:bill``)."""
    return f"{edge.source}>{edge.target}"


class _View:
    """What grandalf reads (``w``, ``h``) and writes (``xy``, the centre) for a vertex."""

    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy: Point = (0.0, 0.0)


class _Path:
    """What grandalf writes for an edge: the centres of its ends and of its dummies."""

    def __init__(self) -> None:
        self.points: list[Point] = []

    def setpath(self, points: list[Point]) -> None:
        self.points = [(float(x), float(y)) for x, y in points]


def layout(topo: Topology, size: Callable[[Node], tuple[float, float]], *,
           labels: Mapping[Edge, tuple[float, float]] | None = None,
           direction: Direction = "LR", margin: float = PART_GAP) -> Layout:
    """Lay out ``topo``: ``size(node)`` is a node's (width, height), ``labels`` the size of
    each labelled edge's label."""
    labels = labels or {}
    across = direction == "LR"  # grandalf lays layers top to bottom: LR turns it

    def view(width: float, height: float) -> _View:
        return _View(height, width) if across else _View(width, height)

    vertices: dict[str, Any] = {}
    for node in topo.nodes:
        vertex = _GVertex(node.id)
        vertex.view = view(*size(node))
        vertices[node.id] = vertex
    # per topology edge: its grandalf edges (two through its label's vertex) and the label's
    pieces: dict[Edge, list[Any]] = {}
    label_vertex: dict[Edge, Any] = {}
    for edge in topo.edges:
        ends = [vertices[edge.source], vertices[edge.target]]
        if edge in labels:
            middle = _GVertex(("label", edge))
            middle.view = view(*labels[edge])
            label_vertex[edge] = middle
            ends.insert(1, middle)
        pieces[edge] = []
        for a, b in pairwise(ends):
            piece = _GEdge(a, b)
            piece.view = _Path()
            pieces[edge].append(piece)

    parts = _parts(topo, vertices, label_vertex, pieces)
    boxes: dict[str, Box] = {}
    label_boxes: dict[Edge, Box] = {}
    lines: dict[Edge, list[Point]] = {}
    offset = margin  # where the next part starts, across the layers
    extent = 0.0  # the furthest any part reaches along the layers

    def turn(point: Point, shift_x: float, shift_y: float) -> Point:
        x, y = point[0] + shift_x, point[1] + shift_y
        return (y, x) if across else (x, y)

    for part_vertices, part_edges, back in parts:
        core = _GraphCore(part_vertices, part_edges)
        sug = SugiyamaLayout(core)
        sug.xspace, sug.yspace = NODE_GAP, LABELLED_LAYER_GAP if labels else LAYER_GAP
        sug.dw, sug.dh = LANE, LANE
        roots = [v for v in part_vertices
                 if not any(e.v[1] is v and e not in back for e in part_edges)]
        sug.init_all(roots=roots or part_vertices[:1], inverted_edges=back)
        sug.draw(SWEEPS)
        # a layer's centre (grandalf's y: every vertex of a layer has it) -> half its depth
        depth = {layer[0].view.xy[1]: max(v.view.h for v in layer) / 2 for layer in sug.layers}
        drawn = [v for layer in sug.layers for v in layer]
        low_x = min(v.view.xy[0] - v.view.w / 2 for v in drawn)
        low_y = min(v.view.xy[1] - v.view.h / 2 for v in drawn)
        high_x = max(v.view.xy[0] + v.view.w / 2 for v in drawn)
        high_y = max(v.view.xy[1] + v.view.h / 2 for v in drawn)
        # grandalf's x runs along a layer: across the layers in LR, it stacks the parts
        shift = (offset - low_x, margin - low_y)
        offset += high_x - low_x + PART_GAP
        extent = max(extent, high_y - low_y)
        for v in part_vertices:
            cx, cy = turn(v.view.xy, *shift)
            w, h = (v.view.h, v.view.w) if across else (v.view.w, v.view.h)
            box = Box(cx - w / 2, cy - h / 2, w, h)
            if isinstance(v.data, tuple):
                label_boxes[v.data[1]] = box
            else:
                boxes[v.data] = box
        for edge in [e for e in topo.edges if pieces[e][0] in part_edges]:
            centres: list[Point] = []
            for piece in pieces[edge]:
                centres += piece.view.points if not centres else piece.view.points[1:]
            lines[edge] = [turn(p, *shift) for p in _through_layers(centres, depth)]
    routes = _ports(topo, boxes, lines, across)
    length = extent + 2 * margin
    breadth = offset - PART_GAP + margin if parts else 2 * margin
    width, height = (length, breadth) if across else (breadth, length)
    return Layout(direction, width, height, boxes,
                  tuple(Route(e, tuple(routes[e]), label_boxes.get(e)) for e in topo.edges))


def _through_layers(centres: list[Point], depth: dict[float, float]) -> list[Point]:
    """A route through the centres of its ends, dummies and label (grandalf's coordinates)
    made to cross each layer straight: its ends get a point on their layer's boundary, each
    point between becomes two (where it enters and leaves its layer), so it bends only in
    the gaps between layers, where no box is."""
    first, last = centres[0], centres[-1]
    way = 1.0 if centres[1][1] > first[1] else -1.0
    points = [first, (first[0], first[1] + way * depth[first[1]])]
    for x, y in centres[1:-1]:
        points += [(x, y - way * depth[y]), (x, y + way * depth[y])]
    way = 1.0 if last[1] > centres[-2][1] else -1.0
    return [*points, (last[0], last[1] - way * depth[last[1]]), last]


def _parts(topo: Topology, vertices: dict[str, Any], label_vertex: dict[Edge, Any],
           pieces: dict[Edge, list[Any]]) -> list[tuple[list[Any], list[Any], list[Any]]]:
    """The connected parts of the graph, in the order of their first node: each part's
    vertices, its grandalf edges, and those of them to invert (an input or output edge
    against the model's layers: where the model cut a cycle)."""
    part_of: dict[str, str] = {n.id: n.id for n in topo.nodes}

    def find(node: str) -> str:
        while part_of[node] != node:
            part_of[node] = part_of[part_of[node]]
            node = part_of[node]
        return node

    for edge in topo.edges:
        a, b = find(edge.source), find(edge.target)
        if a != b:
            part_of[b] = a
    layer = {n.id: n.layer for n in topo.nodes}
    grouped: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    for node in topo.nodes:
        grouped.setdefault(find(node.id), ([], [], []))[0].append(vertices[node.id])
    for edge in topo.edges:
        part = grouped[find(edge.source)]
        if edge in label_vertex:
            part[0].append(label_vertex[edge])
        part[1].extend(pieces[edge])
        source, target = layer[edge.source], layer[edge.target]
        if edge.kind != "uses" and source is not None and target is not None \
                and target <= source:
            part[2].extend(pieces[edge])
    return list(grouped.values())


def _ports(topo: Topology, boxes: dict[str, Box], lines: dict[Edge, list[Point]],
           across: bool) -> dict[Edge, list[Point]]:
    """Each route with its ends moved from the boxes' centres to ports on their sides: the
    side facing the route's next point, ports spread along it in the order of what they
    face, so routes into one box do not meet at one point."""
    ports: dict[tuple[str, bool], list[tuple[float, Edge, bool]]] = {}
    for edge in topo.edges:
        points = lines[edge]
        for at_source in (True, False):
            node = edge.source if at_source else edge.target
            box = boxes[node]
            other = points[2] if at_source else points[-3]  # past its layer's boundary
            along = other[0] - box.cx if across else other[1] - box.cy
            facing_far = along > 0 or (along == 0 and at_source)
            ports.setdefault((node, facing_far), []).append(
                (other[1] if across else other[0], edge, at_source))
    routes = {e: list(points) for e, points in lines.items()}
    for (node, facing_far), ends in ports.items():
        box = boxes[node]
        ends.sort(key=lambda end: end[0])
        for i, (_, edge, at_source) in enumerate(ends):
            share = (i + 1) / (len(ends) + 1)
            if across:
                point = (box.x + box.width if facing_far else box.x, box.y + box.height * share)
            else:
                point = (box.x + box.width * share, box.y + box.height if facing_far else box.y)
            route = routes[edge]
            end, next_to = (0, 1) if at_source else (-1, -2)
            route[end] = point
            # the step from the box to its layer's boundary stays straight
            route[next_to] = ((route[next_to][0], point[1]) if across
                              else (point[0], route[next_to][1]))
    return routes
