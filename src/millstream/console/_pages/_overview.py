"""The console's Overview page: the topology of every app that reports metrics, laid out by
grandalf (``observe._layout``) and drawn on the server, each edge labelled with its rate and
each service with its health; ``static/overview.js`` keeps both live from ``/api/overview``.

Everything comes from the metrics history: the topology from each group's latest record
(``topology_from_metrics``), a service's health from the health model
(``Snapshot``/``ServiceView.health``), an edge's rate from the latest record of each of its
service's instances that is up — the records it read from the stream (``streams_in``) or
wrote to it (``streams_out``) in that interval, per second. A service that is not up has no
rate ("–"). When the topology changes (a service appears), the answer carries the new
drawing and the page swaps it in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream.console._context import context
from millstream.console._history import MetricsHistory
from millstream.console._render import fmt_rate, json_answer, render
from millstream.observe._health import Health, ServiceView
from millstream.observe._layout import Direction, edge_id
from millstream.observe._svg import topology_svg
from millstream.observe._topology import (
    Edge,
    Topology,
    reporting_services,
    topology_from_metrics,
)
from millstream.runtime._metrics_record import MetricsRecord

__all__ = ["Overview", "ServiceRow", "overview", "routes"]

#: wider than this (px), the graph is drawn top to bottom instead of left to right
MAX_WIDTH = 1340.0


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service as the page's table (and its badge) shows it."""

    name: str
    app: str
    group: str
    health: Health
    up: int
    instances: int
    rate_in: float | None
    rate_out: float | None
    lag: int
    errors: int
    exceptions: int

    @property
    def href(self) -> str:
        return f"/services/{quote(self.group, safe='')}"

    def to_json(self) -> dict[str, object]:
        return {"app": self.app, "group": self.group, "health": self.health, "up": self.up,
                "instances": self.instances, "rate_in": self.rate_in,
                "rate_out": self.rate_out, "rate_in_text": fmt_rate(self.rate_in),
                "rate_out_text": fmt_rate(self.rate_out), "lag": self.lag,
                "errors": self.errors, "exceptions": self.exceptions, "href": self.href}


@dataclass(frozen=True, slots=True)
class Overview:
    """What the page shows at ``time_ms``: the topology, each service's row (by its node
    name) and each input and output edge's rate (None: its service is not up)."""

    time_ms: int
    topology: Topology
    services: dict[str, ServiceRow]
    rates: dict[Edge, float | None] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """Changes when a node or edge is added or removed (not with rates or health)."""
        text = "\n".join([*(n.id for n in self.topology.nodes),
                          *(edge_id(e) for e in self.topology.edges)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def svg(self) -> str:
        """The drawing: left to right, or top to bottom when that is too wide."""
        links = {f"service:{name}": row.href for name, row in self.services.items()}
        links.update({n.id: f"/streams/{quote(n.name, safe='')}"
                      for n in self.topology.of_kind("stream")})
        rates = {e: fmt_rate(r) for e, r in self.rates.items()}
        health = {name: row.health for name, row in self.services.items()}

        def draw(direction: Direction) -> str:
            return topology_svg(self.topology, rates=rates, health=health, links=links,
                                standalone=False, direction=direction)

        wide = draw("LR")
        return wide if _width(wide) <= MAX_WIDTH else draw("TB")

    def to_json(self) -> dict[str, object]:
        return {"time_ms": self.time_ms, "signature": self.signature,
                "apps": self.topology.app,
                "services": {name: row.to_json() for name, row in self.services.items()},
                "edges": {edge_id(e): {"rate": r, "text": fmt_rate(r)}
                          for e, r in self.rates.items()}}


def _width(svg: str) -> float:
    start = svg.index(' width="') + len(' width="')
    return float(svg[start:svg.index('"', start)])


def overview(history: MetricsHistory, now: float | None = None) -> Overview:
    """The overview as of ``now`` (the history's clock when None)."""
    latest = history.latest()
    every = [r for records in latest.values() for r in records]
    snapshot = history.snapshot(now)
    views = {v.group: v for v in snapshot.services}
    topo = topology_from_metrics(every)
    rows: dict[str, ServiceRow] = {}
    rates: dict[Edge, float | None] = {}
    for name, newest in reporting_services(every).items():
        view = views.get(newest.group)
        up = [r for r in latest.get(newest.group, []) if _is_up(r, view)]
        rows[name] = _row(name, newest, view)
        sid = f"service:{name}"
        for edge in topo.edges:
            if edge.kind == "input" and edge.target == sid:
                rates[edge] = _rate(up, "streams_in", edge.source.split(":", 1)[1])
            elif edge.kind == "output" and edge.source == sid:
                rates[edge] = _rate(up, "streams_out", edge.target.split(":", 1)[1])
    return Overview(snapshot.time_ms, topo, rows, rates)


def _is_up(record: MetricsRecord, view: ServiceView | None) -> bool:
    return view is not None and any(i.up and (i.instance, i.run) == (record.instance, record.run)
                                    for i in view.instances)


def _rate(records: list[MetricsRecord], field: str, stream: str) -> float | None:
    """Records per second read from (``streams_in``) or written to (``streams_out``)
    ``stream`` over each record's interval, added up (None when none is up)."""
    if not records:
        return None
    counts: list[dict[str, int]] = [getattr(r, field) for r in records]
    return sum(c.get(stream, 0) * 1000.0 / max(r.interval_ms, 1)
               for c, r in zip(counts, records, strict=True))


def _row(name: str, newest: MetricsRecord, view: ServiceView | None) -> ServiceRow:
    if view is None:
        return ServiceRow(name, newest.app, newest.group, "silent", 0, 0, None, None, 0, 0, 0)
    up = view.alive
    return ServiceRow(name, newest.app, newest.group, view.health, up, len(view.instances),
                      view.rate_in if up else None, view.rate_out if up else None, view.lag,
                      view.errors, view.exceptions)


def overview_page(request: Request) -> Response:  # sync: the layout runs in a thread
    ctx = context(request)
    view = overview(ctx.history)
    return render(request, "overview.html", title="Overview", active="overview",
                  overview=view, graph=Markup(view.svg()),  # _svg escaped every name in it
                  rows=list(view.services.items()), keep_s=ctx.history.keep)


def overview_api(request: Request) -> Response:
    """The overview as JSON; with ``?have=<signature>`` of another topology, its drawing."""
    view = overview(context(request).history)
    answer = view.to_json()
    if request.query_params.get("have") != view.signature:
        answer["graph"] = view.svg()
    return json_answer(answer)


routes: list[BaseRoute] = [
    Route("/", overview_page, methods=["GET"]),
    Route("/api/overview", overview_api, methods=["GET"]),
]
