"""The ops page (``GET /ops``): each service's health, rates and latency from
``millstream.metrics``, the app's topology with each service's health, the latest
exceptions, and a link to the millstream console (``VIDEOSITE_CONSOLE_URL``).
``GET /api/ops`` gives the same rows as JSON; the page's script fetches it every 2 s to stay
live, the table's cells and the topology's health badges alike.

The page shows services' exception messages and record ids, so it needs the API token unless
``VIDEOSITE_OPS_PUBLIC`` opens it (``check_ops_access``); so does the topology drawing.
The health badges and the topology use the console's own stylesheets, served at
``/console-static`` (see ``app.create_app``), so a service looks the same here and there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import cache
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup

from millstream.observe import ServiceView, to_svg
from videosite.app import app

from .api import check_ops_access, readable, site_of
from .pages import render

__all__ = ["NUMBERS", "SVG_CSP", "router", "rows"]

router = APIRouter()
#: the drawing's own policy: its <style> element applies (an image runs no script)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


#: the numeric columns of a service's row, in the page's order
NUMBERS = ("instances", "in_s", "p50_ms", "p99_ms", "errors", "exceptions", "lag",
           "total_in")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def rows(services: Iterable[ServiceView]) -> list[dict[str, str]]:
    """One row a service, its cells as the page shows them: ``name``, ``status`` (its
    health as the console says it: running, stalled, silent, stopped or erroring) and
    ``NUMBERS``; and ``page``, its page on the console
    (relative to the console's address)."""
    return [{"name": s.service or s.group, "page": f"services/{quote(s.group, safe='')}",
             "status": s.health,
             "instances": f"{s.alive}/{len(s.instances)}", "in_s": f"{s.rate_in:.1f}",
             "p50_ms": _ms(s.percentile_ms(0.5)), "p99_ms": _ms(s.percentile_ms(0.99)),
             "errors": str(s.errors), "exceptions": str(s.exceptions), "lag": str(s.lag),
             "total_in": str(s.totals.records_in)} for s in services]


@cache
def topology_svg() -> str:
    """The video site's topology (its services, streams and tables), drawn once."""
    return to_svg(app)


def live_topology(shown: list[dict[str, str]], console_url: str) -> Markup:
    """The app's topology to put in the page: each service with its health as ``shown``
    says it (the page's script keeps it live from the same rows) and a link to its page on
    the console; styled by the console's ``overview.css``."""
    health = {row["name"]: row["status"] for row in shown}
    links = {f"service:{name}": console_url + f"services/{quote(spec.group, safe='')}"
             for name, spec in app.services.items()}
    # to_svg escaped every name and address in it
    return Markup(to_svg(app, health=health, links=links, standalone=False))


@readable(router, "/ops", response_class=HTMLResponse)
async def ops_page(request: Request) -> HTMLResponse:
    """The services' metrics and the latest exceptions (with their messages and ids): only
    with the API token, unless ``ops_public``."""
    site = site_of(request)
    check_ops_access(request, site)
    view = await asyncio.to_thread(site.ops)
    services = rows(view.metrics.services if view.metrics is not None else ())
    console_url = site.settings.console_url.rstrip("/") + "/"
    return render("ops.html", services=services, numbers=NUMBERS,
                  exceptions=view.exceptions, title="Ops", page="ops",
                  console_url=console_url, topology=live_topology(services, console_url))


@readable(router, "/api/ops")
async def ops_rows(request: Request) -> JSONResponse:
    """The ops page's service rows (``rows``), for its script: the same access."""
    site = site_of(request)
    check_ops_access(request, site)
    view = await asyncio.to_thread(site.ops)
    services = view.metrics.services if view.metrics is not None else ()
    return JSONResponse({"services": rows(services)}, headers={"Cache-Control": "no-store"})


@readable(router, "/ops/topology.svg")
async def topology(request: Request) -> Response:
    """The topology drawing the ops page shows (an image: same access as the page)."""
    check_ops_access(request, site_of(request))
    return Response(topology_svg(), media_type="image/svg+xml",
                    headers={"content-security-policy": SVG_CSP,
                             "cache-control": "private, max-age=300"})
