"""The console's Shadows page: the shadow versions the platform holds (``/shadows``) and one
shadow's outputs against production's, field by field, with its promotion
(``/shadows/{group}``, the shadow's consumer group, e.g. ``shop.billing.shadow.v2``).

The console has no app: shadows are found on the platform (``operations._shadow
.find_shadows``: their groups and streams; the metrics history names their service when it
has their records). The diff and the promotion are ``diff_shadow`` and ``promote_shadow``,
what ``millstream diff`` and ``millstream promote`` call. A promotion is confirmed with the
name of what it overwrites: production's group.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream._wellknown import DEPLOYMENTS
from millstream.console._context import ConsoleContext, context
from millstream.console._limits import MAX_DIFF
from millstream.console._pages._outcomes import outcome, redirect_with
from millstream.console._render import json_answer, render
from millstream.console._security import authorize, confirmed
from millstream.errors import NotFoundError
from millstream.observe import Snapshot
from millstream.operations._shadow import (
    ShadowTarget,
    StreamDiff,
    diff_shadow,
    find_shadows,
    promote_shadow,
)
from millstream.service._shadow import production_name
from millstream.streams._reading import read_ranges

__all__ = ["routes"]

#: differing records shown per output stream
EXAMPLES = 50
#: promotions listed (the newest of millstream.deployments)
PROMOTIONS = 20
#: characters of one value shown before it is cut
VALUE = 2000


def _status(ctx: ConsoleContext, group: str, health: Snapshot | None = None) -> str:
    """The group's health from its metrics (``health``, else the history's now), else from
    its members: running or stopped."""
    try:
        return str((health or ctx.history.snapshot()).get(group).status)
    except KeyError:
        pass
    members = ctx.streams.admin().describe_group(group).members
    return "running" if members else "stopped"


def _named(ctx: ConsoleContext, target: ShadowTarget) -> ShadowTarget:
    """``target`` as the shadow's newest metrics record names it (its service, app, inputs
    and outputs), when the history holds one; else as found on the platform."""
    for record in ctx.history.records(target.shadow_group)[-1:]:
        inputs = record.inputs or target.inputs
        outputs = tuple(production_name(s) for s in record.outputs) or target.outputs
        return replace(target, service=record.service or target.service,
                       app=record.app or target.app, inputs=inputs, outputs=outputs)
    return target


def _promotions(ctx: ConsoleContext) -> list[dict[str, Any]]:
    """The newest promotions recorded in millstream.deployments, newest first."""
    admin = ctx.streams.admin()
    if DEPLOYMENTS not in admin.list_streams():
        return []
    info = admin.describe_stream(DEPLOYMENTS)
    ranges = {p.partition: (max(p.start, p.end - PROMOTIONS), p.end) for p in info.partitions}
    found = []
    for record in read_ranges(ctx.streams, DEPLOYMENTS, ranges, timeout_s=10):
        try:
            doc = json.loads(record.value or b"")
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "promotion":
            found.append(doc)
    found.sort(key=lambda d: d.get("time_ms", 0), reverse=True)
    return found[:PROMOTIONS]


def _overview(ctx: ConsoleContext) -> dict[str, Any]:
    promotions = _promotions(ctx)
    health = ctx.history.snapshot()
    shadows = []
    for target in find_shadows(ctx.streams):
        target = _named(ctx, target)
        promoted = [p for p in promotions if p.get("from_group") == target.shadow_group]
        shadows.append({
            "group": target.shadow_group, "production": target.group, "app": target.app,
            "service": target.service, "version": target.version,
            "inputs": list(target.inputs), "outputs": list(target.outputs),
            "status": _status(ctx, target.shadow_group, health),
            "production_status": _status(ctx, target.group, health),
            "lag": ctx.streams.admin().describe_group(target.shadow_group).lag,
            "promoted_ms": promoted[0].get("time_ms") if promoted else None})
    return {"shadows": shadows, "promotions": promotions}


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, bytes):
        text = f"bytes {value[:VALUE // 2].hex()}" + ("…" if len(value) > VALUE // 2 else "")
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE else text[:VALUE - 1] + "…"


_ABSENT = object()


def _diff_view(result: StreamDiff) -> dict[str, Any]:
    records = []
    for d in result.examples:
        key = d.key.decode(errors="replace") if d.key is not None else "(no key)"
        if d.fields == ("(value)",):
            changes = [{"field": "(the whole value)", "production": _shown(d.production),
                        "shadow": _shown(d.shadow)}]
        else:
            changes = [{"field": f, "production": _shown(d.production.get(f, _ABSENT)),
                        "shadow": _shown(d.shadow.get(f, _ABSENT))} for f in d.fields]
        records.append({"key": key, "occurrence": d.occurrence + 1, "changes": changes})
    return {"stream": result.stream, "shadow_stream": result.shadow_stream,
            "production_records": result.production_records,
            "shadow_records": result.shadow_records, "other_writers": result.other_writers,
            "equal": result.equal, "differing": result.differing,
            "only_production": result.only_production, "only_shadow": result.only_shadow,
            "identical": result.identical, "truncated": result.truncated,
            "fields": result.fields.most_common(), "records": records}


def _target(ctx: ConsoleContext, group: str) -> ShadowTarget:
    for target in find_shadows(ctx.streams):
        if target.shadow_group == group:
            return _named(ctx, target)
    raise NotFoundError(f"there is no shadow group {group!r}; the shadows are listed at "
                        "/shadows")


def _shadow_page(request: Request, group: str) -> Response:
    ctx = context(request)
    promoted: dict[str, Any] | None = outcome(request)
    target = _target(ctx, group)
    diffs = [_diff_view(r) for r in diff_shadow(ctx.streams, target, examples=EXAMPLES,
                                                 max_records=MAX_DIFF)]
    history = [p for p in _promotions(ctx) if p.get("from_group") == group]
    return render(
        request, "shadow.html", title=f"Shadow {target.version} of {target.service}",
        active="shadows", group=group, target=target, diffs=diffs, examples=EXAMPLES,
        max_scan=MAX_DIFF, identical=all(d["identical"] for d in diffs),
        shadow_status=_status(ctx, group), production_status=_status(ctx, target.group),
        promoted=promoted, history=history, compared_ms=int(time.time() * 1000))


async def shadows_page(request: Request) -> Response:
    data = await run_in_threadpool(_overview, context(request))
    return render(request, "shadows.html", title="Shadows", active="shadows", **data,
                  page_data={"api": "/api/shadows"})


async def shadows_api(request: Request) -> Response:
    return json_answer(await run_in_threadpool(_overview, context(request)))


async def shadow_page(request: Request) -> Response:
    return await run_in_threadpool(_shadow_page, request, request.path_params["group"])


async def promote_action(request: Request) -> Response:
    group = request.path_params["group"]
    form = await authorize(request)  # nothing is read before the token check
    ctx = context(request)
    target = await run_in_threadpool(_target, ctx, group)
    # what a promotion overwrites is production's group: that is the name typed
    confirmed(form, target.group)
    return redirect_with(f"/shadows/{quote(group, safe='')}",
                         await run_in_threadpool(promote_shadow, ctx.streams, target))


routes: list[BaseRoute] = [
    Route("/shadows", shadows_page, methods=["GET"]),
    Route("/api/shadows", shadows_api, methods=["GET"]),
    Route("/shadows/{group}", shadow_page, methods=["GET"]),
    Route("/shadows/{group}/promote", promote_action, methods=["POST"]),
]
