"""Drawing an app's topology: as text for a terminal and as a self-contained SVG document.

``to_text`` lists the services by layer as ``ins ─▶ [service] ─▶ outs`` lines, then a table of
the streams. ``to_svg`` is the SVG that ``_svg`` draws from the layered layout of
``_layout`` (services, streams and stores as boxes, left to right by layer). Both take the
model from ``topology(app)``; the platform streams are drawn only with ``include_platform``.
"""

from __future__ import annotations

from collections.abc import Mapping

from millstream.observe._svg import topology_svg
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


def to_svg(app: App, *, include_platform: bool = False, title: str | None = None,
           health: Mapping[str, str] | None = None, links: Mapping[str, str] | None = None,
           standalone: bool = True) -> str:
    """A self-contained SVG document of the topology (``title`` defaults to the app's name):
    every service, stream and store a ``<g class="node …" data-id="<kind>:<name>">`` with its
    box, every input, output and use a ``<g class="edge …" data-id=…>`` with its route (see
    ``_svg``). ``health``: service name → its health word, drawn as a badge and the class
    ``health-<word>`` ("silent" where none); ``links``: node id → where a click on it goes.
    Not ``standalone``: an ``<svg>`` to put in a page, styled by the page (the console's
    ``overview.css`` styles it)."""
    return topology_svg(topology(app, include_platform=include_platform),
                        title=title if title is not None else app.name, health=health,
                        links=links, standalone=standalone)
