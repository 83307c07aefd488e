"""An app's topology — its services, streams and stores, and what connects them — as a model.

Everything is derived from the app's declarations (``App.services``, ``App.streams``); nothing
touches a backend. ``topology(app)`` is the model: nodes (services, streams, stores) and edges
(stream → service for an input, service → stream for an output, service — store for
``uses``). Services and streams get a layer, the longest path from the app's source streams:
a stream no service writes is layer 0, a service lies one past its latest input, a stream one
past its latest writer, so services sit on odd layers and streams on even ones. A cycle is cut
where a depth-first walk (streams in declaration order first) closes it. The platform streams
every service writes (metrics, exceptions, and checkpoints for stateful services) are left out
unless ``include_platform``. ``_drawing`` renders the model as text and SVG.

``topology_from_metrics(records)`` is the same model for a running system, from the metrics
records its services write (each names its inputs, outputs and stores): the services of
every app that reports, without importing any. Each group's latest record says what it
reads and writes; shadow versions are left out (they write their own copies of production's
streams), and so are the platform streams unless ``include_platform``. What the app's
declarations alone know (payloads, partitions, stateful, docstrings) is not there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from millstream._wellknown import CHECKPOINTS, EXCEPTIONS, METRICS, is_platform_stream
from millstream.service._app import App
from millstream.service._shadow import shadow_suffix

if TYPE_CHECKING:
    from millstream.runtime._metrics_record import MetricsRecord

__all__ = ["PLATFORM_STREAMS", "Edge", "Node", "Topology", "reporting_services", "topology",
           "topology_from_metrics"]

Kind = Literal["service", "stream", "store"]
EdgeKind = Literal["input", "output", "uses"]

#: The streams the runtime writes for every service (checkpoints: stateful services only).
PLATFORM_STREAMS = (METRICS, EXCEPTIONS, CHECKPOINTS)


@dataclass(frozen=True, slots=True)
class Node:
    """A service, stream or store of the app; ``layer`` is None for stores.

    ``detail`` is what a drawing shows beside the name: a stream's payload and partitions, a
    service's ``stateful`` / ``exactly-once`` marks. ``description`` is a service's docstring
    summary."""

    kind: Kind
    name: str
    layer: int | None = None
    detail: str = ""
    description: str = ""
    platform: bool = False

    @property
    def id(self) -> str:
        """``kind:name`` — unique in one topology (``store:tables:videos``)."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Edge:
    """``input``: stream → service; ``output``: service → stream; ``uses``: service — store
    (no direction: a service may read and write a store). Ends are node ids."""

    kind: EdgeKind
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Topology:
    """The app's nodes (services, streams, stores, each in declaration order) and edges."""

    app: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def of_kind(self, kind: Kind) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def node(self, node_id: str) -> Node:
        """The node with id ``node_id``; KeyError if there is none."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def ends(self, node_id: str, kind: EdgeKind, *, incoming: bool) -> list[str]:
        """Names at the other end of ``node_id``'s ``kind`` edges, in or out, in edge order."""
        if incoming:
            return [e.source.split(":", 1)[1] for e in self.edges
                    if e.kind == kind and e.target == node_id]
        return [e.target.split(":", 1)[1] for e in self.edges
                if e.kind == kind and e.source == node_id]


def topology(app: App, *, include_platform: bool = False) -> Topology:
    """The app's topology model, from its declarations alone."""
    edges: list[Edge] = []
    stream_names = list(app.streams)
    stores: list[str] = []
    details: dict[str, str] = {}
    for spec in app.services.values():
        sid = f"service:{spec.name}"
        edges += [Edge("input", f"stream:{s}", sid) for s in spec.inputs]
        outputs = list(spec.outputs)
        if include_platform:
            platform = [METRICS, EXCEPTIONS] + ([CHECKPOINTS] if spec.stateful else [])
            outputs += [s for s in platform if s not in outputs]
        for s in outputs:
            if s not in stream_names:
                stream_names.append(s)
        edges += [Edge("output", sid, f"stream:{s}") for s in outputs]
        written = {f"tables:{t.name}": f"table of {t.model.__name__}, fed from {t.stream}"
                   for t in spec.tables}  # table outputs: stores it writes, shown as uses
        for store in dict.fromkeys([*spec.uses, *written]):
            if store not in stores:
                stores.append(store)
            details[store] = details.get(store) or written.get(store, "")
            edges.append(Edge("uses", sid, f"store:{store}"))
    layers = _layers([f"stream:{s}" for s in stream_names]
                     + [f"service:{s}" for s in app.services], edges)
    nodes: list[Node] = []
    for spec in app.services.values():
        marks = [m for m, on in (("stateful", spec.stateful),
                                 ("exactly-once", spec.exactly_once)) if on]
        nodes.append(Node("service", spec.name, layers[f"service:{spec.name}"],
                          ", ".join(marks), spec.description))
    for s in stream_names:
        declared = app.streams.get(s)
        if declared is not None:
            count = declared.partitions
            detail = f"{declared.codec.description}, {count} partition{'s' * (count != 1)}"
        else:
            detail = "platform, 1 partition"
        nodes.append(Node("stream", s, layers[f"stream:{s}"], detail,
                          platform=s in PLATFORM_STREAMS))
    nodes += [Node("store", s, detail=details[s]) for s in stores]
    return Topology(app.name, tuple(nodes), tuple(edges))


def reporting_services(records: Iterable[MetricsRecord]) -> dict[str, MetricsRecord]:
    """Each service that reports in ``records`` by its name in ``topology_from_metrics``
    (its service name, or its group when two groups share the name), with its group's latest
    record; sorted by app and service, shadow versions left out."""
    latest: dict[str, MetricsRecord] = {}
    for record in records:
        if record.version and record.group.endswith(shadow_suffix(record.version)):
            continue  # a shadow version: production's group draws the service
        known = latest.get(record.group)
        if known is None or record.time_ms >= known.time_ms:
            latest[record.group] = record
    chosen = sorted(latest.values(), key=lambda r: (r.app, r.service, r.group))
    names = [r.service or r.group for r in chosen]
    shared = {n for n in names if names.count(n) > 1}
    return {r.group if n in shared else n: r for n, r in zip(names, chosen, strict=True)}


def topology_from_metrics(records: Iterable[MetricsRecord], *,
                          include_platform: bool = False) -> Topology:
    """The topology of every app that reports metrics, from each group's latest record in
    ``records``. A service is named by its service name, or by its group when two groups
    (two apps) share that name; ``Topology.app`` names the apps, comma-separated."""
    services = list(reporting_services(records).items())

    def kept(stream: str) -> bool:
        return include_platform or not is_platform_stream(stream)

    edges: list[Edge] = []
    stream_names: list[str] = []
    stores: list[str] = []
    for name, record in services:
        sid = f"service:{name}"
        inputs = [s for s in dict.fromkeys(record.inputs) if kept(s)]
        outputs = [s for s in dict.fromkeys(record.outputs) if kept(s)]
        if include_platform:
            outputs += [s for s in (METRICS, EXCEPTIONS) if s not in outputs]
        for s in [*inputs, *outputs]:
            if s not in stream_names:
                stream_names.append(s)
        edges += [Edge("input", f"stream:{s}", sid) for s in inputs]
        edges += [Edge("output", sid, f"stream:{s}") for s in outputs]
        for store in dict.fromkeys(record.stores):
            if store not in stores:
                stores.append(store)
            edges.append(Edge("uses", sid, f"store:{store}"))
    layers = _layers([f"stream:{s}" for s in stream_names]
                     + [f"service:{n}" for n, _ in services], edges)
    nodes = [Node("service", n, layers[f"service:{n}"]) for n, _ in services]
    nodes += [Node("stream", s, layers[f"stream:{s}"], platform=is_platform_stream(s))
              for s in stream_names]
    nodes += [Node("store", s) for s in stores]
    apps = ", ".join(sorted({r.app for _, r in services if r.app}))
    return Topology(apps, tuple(nodes), tuple(edges))


def _layers(order: list[str], edges: Iterable[Edge]) -> dict[str, int]:
    """Longest-path layers over stream and service ids; back edges of a DFS are ignored."""
    succ: dict[str, list[str]] = {n: [] for n in order}
    for e in edges:
        if e.kind != "uses":
            succ[e.source].append(e.target)
    state: dict[str, bool] = {}  # False: on the DFS stack, True: finished
    back: set[tuple[str, str]] = set()
    postorder: list[str] = []
    for root in order:
        if root in state:
            continue
        state[root] = False
        stack = [(root, iter(succ[root]))]
        while stack:
            node, successors = stack[-1]
            for nxt in successors:
                if nxt not in state:
                    state[nxt] = False
                    stack.append((nxt, iter(succ[nxt])))
                    break
                if state[nxt] is False:
                    back.add((node, nxt))
            else:
                state[node] = True
                postorder.append(node)
                stack.pop()
    layer = dict.fromkeys(order, 0)
    for node in reversed(postorder):  # a topological order once back edges are dropped
        for nxt in succ[node]:
            if (node, nxt) not in back:
                layer[nxt] = max(layer[nxt], layer[node] + 1)
    return layer
