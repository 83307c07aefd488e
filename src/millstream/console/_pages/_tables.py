"""The console's Tables page: every table with the stream that feeds it and how far behind it
is (``/tables``), and one table (``/tables/{name}``): its documents a page at a time, a query
by field, its snapshots (take, list, restore) and a rebuild from its stream.

The reads and the actions are ``operations._tables`` and ``tables``' own functions, the ones
``millstream tables`` calls; this module only turns requests into calls and answers into
pages. Every action goes through ``action(request, confirm=<table name>)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream.console._context import ConsoleContext, context
from millstream.console._limits import MAX_PAYLOAD, MAX_RECORDS
from millstream.console._pages._outcomes import outcome, redirect_with
from millstream.console._render import json_answer, render
from millstream.console._security import action
from millstream.errors import InvalidRequestError, MillstreamError, NotFoundError
from millstream.operations._tables import (
    QueryAnswer,
    TableStatus,
    parse_value,
    query_table,
    snapshot_headers,
    table_status,
    table_statuses,
)
from millstream.records import StreamPartition
from millstream.tables._base import Scalar
from millstream.tables._materialize import rebuild
from millstream.tables._snapshot import list_snapshots, restore_snapshot, write_snapshot

__all__ = ["routes"]

#: documents on one page of a table
PAGE = 50
#: snapshots listed (newest first; each listed one has its header read)
SNAPSHOTS = 20
#: top-level fields shown as columns (the rest are in each document's full JSON)
COLUMNS = 8
#: characters of one cell before it is cut (the full document is below it)
CELL = 120


def _offsets(offsets: Mapping[StreamPartition, int]) -> str:
    return ", ".join(f"{sp}={o}" for sp, o in sorted(offsets.items())) or "none"


def _status_json(status: TableStatus) -> dict[str, Any]:
    info = status.info
    return {"name": info.name, "documents": info.documents, "indexes": list(info.indexes),
            "feed": info.feed, "behind": status.behind, "problem": status.problem,
            "position": sum(info.offsets.values()),
            "partitions": [{"partition": sp.partition, "offset": info.offsets.get(sp, 0),
                            "end": end} for sp, end in sorted(status.ends.items())]}


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL else text[:CELL - 1] + "…"


def _document(key: str, doc: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    cut = len(text.encode()) > MAX_PAYLOAD
    shown = text.encode()[:MAX_PAYLOAD].decode(errors="ignore") if cut else text
    return {"key": key, "json": shown, "size": len(text.encode()), "cut": cut,
            "cells": {f: _cell(v) for f, v in doc.items()}}


def _columns(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, doc in rows:
        for f in doc:
            seen.setdefault(f, None)
    return list(seen)[:COLUMNS]


def _where(request: Request) -> dict[str, Scalar]:
    """The query's conditions from ``field``/``value`` pairs (blank fields are left out)."""
    fields = request.query_params.getlist("field")
    values = request.query_params.getlist("value")
    where: dict[str, Scalar] = {}
    for i, field in enumerate(fields):
        field = field.strip()
        if field:
            where[field] = parse_value(values[i] if i < len(values) else "", field=field)
    return where


def _snapshots(ctx: ConsoleContext, name: str) -> tuple[list[dict[str, Any]], int, str | None]:
    """The newest snapshots of ``name`` as the page shows them, how many there are, and why
    none could be listed (no file store, a damaged one)."""
    try:
        refs = list_snapshots(ctx.files, name)
        headers = snapshot_headers(ctx.files, name, refs[-SNAPSHOTS:])
    except MillstreamError as exc:
        return [], 0, str(exc)
    shown = [{"url": h.ref.url, "name": h.ref.url.rsplit("/", 1)[-1], "documents": h.documents,
              "size": h.ref.size, "created_ms": h.created_ms, "offsets": _offsets(h.offsets),
              "position": sum(h.offsets.values())} for h in headers]
    return shown, len(refs), None


def _table_page(request: Request, name: str) -> Response:
    ctx = context(request)
    done = outcome(request)
    status = table_status(ctx.tables, ctx.streams, name)
    table = ctx.tables.table(name)
    prefix = request.query_params.get("prefix", "")
    after = request.query_params.get("after") or None
    query_error: str | None = None
    answer: QueryAnswer | None = None
    where: dict[str, Scalar] = {}
    try:
        where = _where(request)
        if where:
            answer = query_table(table, where, limit=MAX_RECORDS)
            query_error = answer.hint and f"no document matched: {answer.hint}"
    except InvalidRequestError as exc:
        query_error = str(exc)
    if answer is not None:
        rows, more = answer.rows, answer.limited
    elif query_error:  # a query that could not run: no documents rather than others
        rows, more = [], False
    else:
        rows = table.scan(prefix, after=after, limit=PAGE + 1)
        rows, more = rows[:PAGE], len(rows) > PAGE
    snapshots, snapshot_count, snapshot_error = _snapshots(ctx, name)
    fields = request.query_params.getlist("field") or [""]
    values = request.query_params.getlist("value") or [""]
    return render(
        request, "table.html", title=f"Table {name}", active="tables", name=name,
        table=_status_json(status),
        documents=[_document(k, d) for k, d in rows], columns=_columns(rows), more=more,
        next_after=rows[-1][0] if rows and more and answer is None else None,
        prefix=prefix, after=after, querying=answer is not None or bool(query_error),
        where=where, field=fields[0], value=values[0], query_error=query_error,
        limit=MAX_RECORDS, page=PAGE, snapshots=snapshots, snapshot_count=snapshot_count,
        snapshot_error=snapshot_error, done=done, page_data={"api": f"/api/tables/{name}"})


async def tables_page(request: Request) -> Response:
    ctx = context(request)
    statuses = await run_in_threadpool(table_statuses, ctx.tables, ctx.streams)
    return render(request, "tables.html", title="Tables", active="tables",
                  tables=[_status_json(s) for s in statuses],
                  page_data={"api": "/api/tables"})


async def tables_api(request: Request) -> Response:
    ctx = context(request)
    statuses = await run_in_threadpool(table_statuses, ctx.tables, ctx.streams)
    return json_answer({"tables": [_status_json(s) for s in statuses]})


async def table_api(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    status = await run_in_threadpool(table_status, ctx.tables, ctx.streams, name)
    return json_answer(_status_json(status))


async def table_page(request: Request) -> Response:
    return await run_in_threadpool(_table_page, request, request.path_params["name"])


def _exists(ctx: ConsoleContext, name: str) -> None:
    if name not in ctx.tables.list_tables():
        raise NotFoundError(f"there is no table {name!r}; the tables are listed at /tables")


async def snapshot_action(request: Request) -> Response:
    name = request.path_params["name"]
    await action(request, confirm=name)
    ctx = context(request)

    def take() -> str:
        _exists(ctx, name)
        info = write_snapshot(ctx.tables.table(name), ctx.files)
        return (f"Snapshot taken: {info.documents} document(s) at offsets "
                f"{_offsets(info.offsets)}, written to {info.ref.url} (sha256 {info.sha256}).")

    return redirect_with(f"/tables/{quote(name)}", await run_in_threadpool(take))


async def restore_action(request: Request) -> Response:
    name = request.path_params["name"]
    form = await action(request, confirm=name)
    wanted = str(form.get("snapshot", ""))
    ctx = context(request)

    def restore() -> str:
        _exists(ctx, name)
        refs = {ref.url: ref for ref in list_snapshots(ctx.files, name)}
        if wanted not in refs:
            raise NotFoundError(f"table {name!r} has no snapshot {wanted!r}; pick one of the "
                                "snapshots listed on its page")
        info = restore_snapshot(ctx.files, refs[wanted], ctx.tables, table=name)
        return (f"Restored {name!r} from {info.ref.url}: {info.documents} document(s), "
                f"offsets {_offsets(info.offsets)}. A running feed continues from there.")

    return redirect_with(f"/tables/{quote(name)}", await run_in_threadpool(restore))


async def rebuild_action(request: Request) -> Response:
    name = request.path_params["name"]
    form = await action(request, confirm=name)
    into = str(form.get("into", "")).strip() or None
    ctx = context(request)

    def run() -> str:
        _exists(ctx, name)
        target = None if into == name else into
        if target is not None and target in ctx.tables.list_tables():
            raise InvalidRequestError(
                f"table {target!r} exists: rebuilding {name!r} into it would replace its "
                f"documents; name a new table, or rebuild {target!r} from its own page")
        stats = rebuild(ctx.streams, ctx.tables, name, into=target)
        return (f"Rebuilt {target or name!r} from its stream: {stats.records} record(s) "
                f"replayed, {stats.upserts} upsert(s), {stats.deletes} delete(s), "
                f"{stats.skipped} skipped; offsets {_offsets(stats.offsets)}.")

    return redirect_with(f"/tables/{quote(name)}", await run_in_threadpool(run))


routes: list[BaseRoute] = [
    Route("/tables", tables_page, methods=["GET"]),
    Route("/api/tables", tables_api, methods=["GET"]),
    Route("/api/tables/{name}", table_api, methods=["GET"]),
    Route("/tables/{name}", table_page, methods=["GET"]),
    Route("/tables/{name}/snapshot", snapshot_action, methods=["POST"]),
    Route("/tables/{name}/restore", restore_action, methods=["POST"]),
    Route("/tables/{name}/rebuild", rebuild_action, methods=["POST"]),
]
