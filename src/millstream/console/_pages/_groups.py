"""The console's Groups pages: every consumer group, one group's offsets and lag, and the
action that resets where a group reads.

``/groups`` lists every group (live members, streams, total lag; a link to the Service page
of those that write metrics). ``/groups/{group}`` shows its members, per partition the
committed offset, the retained range and the lag, and the lag per partition over time: from
the group's metrics records over the kept history when it is a service's group, else sampled
by the page's script (static/groups.js) from each poll of ``/api/groups/{group}``.
``POST /groups/{group}/reset`` resets its offsets (``operations._groups.reset_group``, as
``millstream groups reset`` does) to the beginning, the end, a time or an offset, for every
stream it has read, one stream, or one partition — through ``action`` (token, CSRF, the
group's name typed to confirm), and refused while the group has live members.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream.console._context import ConsoleContext, context
from millstream.console._pages._outcomes import outcome, redirect_with
from millstream.console._render import json_answer, render
from millstream.console._security import action
from millstream.console._series import parse_since, series, start_s
from millstream.errors import InvalidRequestError, MillstreamError, NotFoundError
from millstream.operations._groups import ResetTarget, describe_target, parse_time, reset_group
from millstream.records import StreamPartition
from millstream.streams._info import GroupInfo

__all__ = ["TARGETS", "group_answer", "groups_answer", "reset_target", "routes"]

#: the reset form's choices: its ``to`` field → what it means
TARGETS = {"beginning": "the first retained record", "end": "the end: skip what is there",
           "time": "the first record at or after a time", "offset": "an offset"}


def groups_answer(ctx: ConsoleContext) -> list[dict[str, Any]]:
    """Every consumer group: name, live members, streams read, total lag, and whether it is
    a service's group (it writes metrics)."""
    admin = ctx.streams.admin()
    services = set(ctx.history.groups())
    out = []
    for name in admin.list_groups():
        info = admin.describe_group(name)
        out.append({"group": name, "members": len(info.members),
                    "streams": sorted({p.stream for p in info.partitions}), "lag": info.lag,
                    "service": name in services})
    return out


def _describe(ctx: ConsoleContext, group: str) -> GroupInfo:
    info = ctx.streams.admin().describe_group(group)
    if not info.members and not info.partitions:
        raise NotFoundError(
            f"there is no consumer group {group!r}: it has no live members and no committed "
            "offsets; the groups page lists the groups there are")
    return info


def group_answer(ctx: ConsoleContext, group: str, since: float | None = None) -> dict[str, Any]:
    """What the group page shows, as JSON: ``members``, ``partitions`` (committed, start,
    end, lag, owner), ``lag`` (its total) and, for a service's group, ``series`` (lag per
    partition from its metrics records, from ``since`` if given) with ``start_s``."""
    info = _describe(ctx, group)
    records = ctx.history.records(group)
    lag_series: dict[str, Any] | None = None
    reporting = False  # an instance of the service is writing metrics now
    if records:
        full = series(records, since=since)
        lag_series = {"bucket_s": full.bucket_s, "times": full.times, "lag": full.lag}
        try:
            reporting = ctx.history.snapshot().get(group).alive > 0
        except KeyError:
            reporting = False
    return {
        "group": group, "lag": info.lag,
        "members": [{"member": m.member_id, "client": m.client,
                     "partitions": [f"{sp.stream}/{sp.partition}" for sp in m.partitions]}
                    for m in info.members],
        "partitions": [{"stream": p.stream, "partition": p.partition, "committed": p.committed,
                        "start": p.start, "end": p.end, "lag": p.lag, "owner": p.owner}
                       for p in info.partitions],
        "streams": sorted({p.stream for p in info.partitions}),
        "series": lag_series, "reporting": reporting,
        "start_s": start_s(records),
    }


def _since(request: Request) -> float | None:
    return parse_since(request.query_params.get("since"))


def _page(request: Request, group: str, *, status: int = 200, done: str | None = None,
          failed: str | None = None) -> Response:
    ctx = context(request)
    answer = group_answer(ctx, group)
    return render(request, "group.html", title=f"Group {group}", active="groups", status=status,
                  answer=answer, targets=TARGETS, done=done, failed=failed,
                  keep_minutes=round(ctx.history.keep / 60))


def groups_page(request: Request) -> Response:
    ctx = context(request)
    return render(request, "groups.html", title="Groups", active="groups",
                  groups=groups_answer(ctx))


def groups_api(request: Request) -> Response:
    return json_answer({"groups": groups_answer(context(request))})


def group_page(request: Request) -> Response:
    done = outcome(request)  # after a reset: what it did (post, redirect, get)
    return _page(request, request.path_params["group"],
                 done=done if isinstance(done, str) else None)


def group_api(request: Request) -> Response:
    return json_answer(group_answer(context(request), request.path_params["group"],
                                    _since(request)))


def reset_target(to: str, value: str) -> ResetTarget:
    """The reset form's target: ``to`` (beginning, end, time, offset) and its ``value``."""
    if to == "beginning":
        return "earliest"
    if to == "end":
        return "latest"
    if to == "offset":
        if not value.strip().isdecimal():
            raise InvalidRequestError(
                f"offset {value!r} is not an offset: give an integer ≥ 0 that every partition "
                "reset holds (the partitions table shows their ranges)")
        return int(value.strip())
    if to == "time":
        return ("time", parse_time(value, assume_utc=True))
    raise InvalidRequestError(
        f"reset to {to!r}? Choose one of {', '.join(TARGETS)}")


def _partition(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdecimal():
        raise InvalidRequestError(
            f"partition {text!r} is not a partition number: give an integer ≥ 0, or leave it "
            "empty to reset every partition")
    return int(text.strip())


def _said(group: str, target: ResetTarget,
          results: dict[str, dict[StreamPartition, int]]) -> str:
    where = "; ".join(
        f"{stream}: " + ", ".join(f"partition {sp.partition} → {offset}"
                                  for sp, offset in sorted(offsets.items()))
        for stream, offsets in results.items())
    return f"group {group} now reads from {describe_target(target)}: {where}"


async def reset(request: Request) -> Response:
    """Reset the group's offsets (an action: token, CSRF and the group's name typed)."""
    group = request.path_params["group"]
    form = await action(request, confirm=group)
    ctx = context(request)
    try:
        target = reset_target(str(form.get("to", "")), str(form.get("value", "")))
        stream = str(form.get("stream", "")).strip() or None
        partition = _partition(str(form.get("partition", "")))
        info = await run_in_threadpool(_describe, ctx, group)
        if info.members:
            clients = ", ".join(m.client or m.member_id for m in info.members)
            return await run_in_threadpool(
                _page, request, group, status=409,
                failed=f"group {group!r} has {len(info.members)} live member(s) ({clients}): "
                       "stop its consumers (or wait for their session to expire), then reset "
                       "again; nothing was changed")
        results = await run_in_threadpool(reset_group, ctx.streams, group, target,
                                          stream=stream, partition=partition)
    except NotFoundError:
        raise
    except MillstreamError as exc:
        return await run_in_threadpool(_page, request, group, status=400, failed=str(exc))
    return redirect_with(f"/groups/{quote(group, safe='')}", _said(group, target, results))


routes: list[BaseRoute] = [
    Route("/groups", groups_page, methods=["GET"]),
    Route("/api/groups", groups_api, methods=["GET"]),
    # a group's name may hold "/" (Kafka allows it; the server decodes %2F before routing)
    Route("/groups/{group:path}/reset", reset, methods=["POST"]),
    Route("/groups/{group:path}", group_page, methods=["GET"]),
    Route("/api/groups/{group:path}", group_api, methods=["GET"]),
]
