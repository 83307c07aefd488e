"""The console's Service page: one service (consumer group) over the kept history and live.

``/services/{group}`` draws its charts (records in/out per second, p50/p99 handler time, lag
per partition, errors and exceptions per second; ``console._series`` makes the points from
the group's metrics records), its instances, its partitions' lag and, when it checkpoints
state, the size of that state (``console._checkpoints``). ``/api/services/{group}`` answers
the same as JSON; with ``?since=<seconds>`` only the chart buckets from then on, which the
page's script (static/service.js) fetches every poll to replace its last points and append
new ones. A group with no metrics record in the kept history is a 404 naming it.
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream.console._checkpoints import StateSizes
from millstream.console._context import ConsoleContext, context
from millstream.console._limits import MAX_SCAN
from millstream.console._render import json_answer, render
from millstream.console._series import parse_since, partition_order, series, start_s
from millstream.errors import NotFoundError
from millstream.observe import ServiceView

__all__ = ["routes", "service_answer", "state_sizes"]

_SIZES_LOCK = threading.Lock()


def state_sizes(request: Request) -> StateSizes:
    """The console's reader of ``millstream.checkpoints`` (one per app, made at first use)."""
    with _SIZES_LOCK:
        sizes: StateSizes | None = getattr(request.app.state, "state_sizes", None)
        if sizes is None:
            sizes = request.app.state.state_sizes = StateSizes(max_scan=MAX_SCAN)
        return sizes


def _since(request: Request) -> float | None:
    return parse_since(request.query_params.get("since"))


def _require(ctx: ConsoleContext, group: str) -> ServiceView:
    try:
        return ctx.history.snapshot().get(group)
    except KeyError:
        minutes = round(ctx.history.keep / 60)
        raise NotFoundError(
            f"no service {group!r} has written metrics in the last {minutes} minutes: it is "
            "not a service's group, or it has not run since; the overview lists the services "
            "there are") from None


def service_answer(ctx: ConsoleContext, sizes: StateSizes, group: str,
                   since: float | None = None) -> dict[str, Any]:
    """What the Service page shows of ``group``, as JSON: ``series`` (from ``since`` if
    given), ``summary``, ``instances``, ``partitions``, ``state``, and the streams and stores
    it reads, writes and uses (``inputs``, ``outputs``, ``stores``)."""
    view = _require(ctx, group)
    records = ctx.history.records(group)
    started = {(r.instance, r.run): r.started_ms for r in records}
    p50, p99 = view.percentile_ms(0.50), view.percentile_ms(0.99)
    owners = {p: i.instance for i in view.instances if i.up for p in i.assigned}
    sizes.refresh(ctx.streams)
    state = sizes.of(group)
    newest = max(records, key=lambda r: r.time_ms, default=None)
    return {
        "group": group, "app": view.app, "service": view.service, "status": view.status,
        # what it reads, writes and uses, as its newest record says
        "inputs": list(newest.inputs) if newest else [],
        "outputs": list(newest.outputs) if newest else [],
        "stores": list(newest.stores) if newest else [],
        "series": series(records, since=since).to_json(),
        "start_s": start_s(records),
        "summary": {
            "rate_in": round(view.rate_in, 3), "rate_out": round(view.rate_out, 3),
            "p50_ms": p50, "p99_ms": p99, "lag": view.lag, "errors": view.errors,
            "exceptions": view.exceptions, "alive": view.alive,
            "instances": len(view.instances), "records_in": view.totals.records_in,
            "records_out": view.totals.records_out,
        },
        "instances": [
            {"instance": i.instance, "run": i.run, "version": i.version, "status": i.status,
             "started_ms": started.get((i.instance, i.run)) or None, "seen_ms": i.time_ms,
             "assigned": sorted(i.assigned, key=partition_order) if i.up else [],
             "records_in": i.totals.records_in}
            for i in sorted(view.instances, key=lambda i: (not i.up, i.instance, -i.time_ms))
        ],
        "partitions": [
            {"partition": p, "lag": lag, "owner": owners.get(p)}
            for p, lag in sorted(view.partition_lag.items(), key=lambda kv: partition_order(
                kv[0]))
        ],
        "state": {
            "bytes": sum(s.bytes for s in state),
            "partitions": [{"partition": s.partition, "bytes": s.bytes, "keys": s.keys,
                            "time_ms": s.time_ms, "in_files": s.in_files} for s in state],
            "behind": sizes.behind,
        },
    }


def service_page(request: Request) -> Response:
    ctx = context(request)
    group = request.path_params["group"]
    answer = service_answer(ctx, state_sizes(request), group)
    return render(request, "service.html", title=answer["service"] or group, active="",
                  answer=answer, keep_minutes=round(ctx.history.keep / 60))


def service_api(request: Request) -> Response:
    ctx = context(request)
    return json_answer(service_answer(ctx, state_sizes(request), request.path_params["group"],
                                      _since(request)))


routes: list[BaseRoute] = [
    Route("/services/{group}", service_page, methods=["GET"]),
    Route("/api/services/{group}", service_api, methods=["GET"]),
]
