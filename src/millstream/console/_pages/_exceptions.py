"""The console's Exceptions page: the records services gave up on, and replaying them.

``/exceptions`` lists the exceptions stream (its newest ``MAX_SCAN`` records, the newest
``MAX_RECORDS`` matching shown) filtered by service, stage and error type, with exact counts.
``/exceptions/{id}`` shows one: its input decoded as the Streams page decodes records
(``console/_decode``), the traceback, and whether it was replayed. Replays go through
``action()``: one exception is confirmed by typing its id; the failures matching a filter (or
all of them) by typing their count, which the page shows. Replaying is
``operations/_replay.replay``, as ``millstream exceptions replay`` does: reported inputs are
left out of a filter's replay (they were processed), and what was replayed already is not
replayed again by a filter.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from millstream._wellknown import EXCEPTIONS, retry_stream
from millstream.console._context import context
from millstream.console._decode import show
from millstream.console._failures import (
    Filter,
    Scan,
    Summary,
    read_many,
    read_one,
    replayed_in,
    scan,
)
from millstream.console._limits import MAX_PAYLOAD, MAX_RECORDS, MAX_SCAN
from millstream.console._render import json_answer, render
from millstream.console._security import action, authorize, confirmed
from millstream.errors import InvalidRequestError
from millstream.operations._replay import replay
from millstream.streams._base import Streams

__all__ = ["routes"]

#: replayed ids a page's banner names (the rest are counted)
_NAMED = 50


def _filter(request: Request) -> Filter:
    q = request.query_params
    return Filter(q.get("service", "").strip(), q.get("stage", "").strip(),
                  q.get("type", "").strip())


def _pending(found: Scan, chosen: Filter, done: dict[str, dict[int, int]]) -> list[Summary]:
    """What a replay of ``chosen`` would re-submit: matching, not replayed, not reported."""
    return [s for s in found.matching(chosen)
            if not s.reported and s.id not in done.get(s.group, {})]


def _listing(streams: Streams, chosen: Filter) -> dict[str, Any]:
    found = scan(streams)
    matching = found.matching(chosen)
    done = replayed_in(streams, {s.group for s in found.summaries})
    return {"found": found, "matching": matching, "shown": matching[-MAX_RECORDS:][::-1],
            "done": done, "pending": _pending(found, chosen, done),
            "pending_all": _pending(found, Filter(), done), "facets": found.facets()}


def _bounded(text: str) -> str:
    """``text`` cut at ``MAX_PAYLOAD`` bytes, saying so (a traceback can be huge)."""
    data = text.encode()
    if len(data) <= MAX_PAYLOAD:
        return text
    return (data[:MAX_PAYLOAD].decode(errors="ignore")
            + f"\n… cut: showing the first {MAX_PAYLOAD:,} of {len(data):,} bytes")


def _replayed_note(request: Request) -> list[int]:
    text = request.query_params.get("replayed", "")
    return [int(part) for part in text.split(",") if part.strip().isdecimal()][:_NAMED]


def exceptions_page(request: Request) -> Response:
    chosen = _filter(request)
    values = _listing(context(request).streams, chosen)
    count = request.query_params.get("count", "")
    return render(request, "exceptions.html", title="Exceptions", active="exceptions",
                  chosen=chosen, max_scan=MAX_SCAN, max_records=MAX_RECORDS,
                  replayed=_replayed_note(request),
                  replayed_count=int(count) if count.isdecimal() else 0, **values)


def exceptions_api(request: Request) -> Response:
    """How many exception records the stream holds now (the page says when new ones came)."""
    streams = context(request).streams
    total = (streams.admin().describe_stream(EXCEPTIONS).records
             if EXCEPTIONS in streams.admin().list_streams() else 0)
    return json_answer({"total": total})


def _ident(request: Request) -> int:
    ident: int = request.path_params["ident"]
    return ident


def exception_page(request: Request) -> Response:
    streams = context(request).streams
    failure = read_one(streams, _ident(request))
    done = replayed_in(streams, [failure.group]).get(failure.group, {})
    again = [s for s in scan(streams).summaries if s.replay_of == failure.id]
    value = None if failure.by_reference else show(failure.value())
    where = failure.input
    return render(
        request, "exception.html", title=f"Exception {failure.id}", active="exceptions",
        failure=failure, doc=failure.document, key=show(failure.key(), as_json=False),
        value=value, headers=[(n, show(v, as_json=False)) for n, v in failure.headers()],
        traceback=_bounded(str(failure.document.get("error", {}).get("traceback", ""))),
        replayed_at=done.get(failure.id), retry=retry_stream(failure.group) if failure.group
        else "", again=again, input=where, just_replayed=bool(_replayed_note(request)),
        short_type=failure.error_type.rpartition(".")[2])


async def replay_one(request: Request) -> Response:
    ident = _ident(request)
    await action(request, confirm=str(ident))
    streams = context(request).streams

    def work() -> None:
        replay(streams, [read_one(streams, ident)])  # NotFoundError naming the ids there are

    await run_in_threadpool(work)
    return RedirectResponse(f"/exceptions/{ident}?replayed={ident}", status_code=303)


def _upto(form: Any) -> int:
    """The newest exception id the page showed (its form's ``upto``): a replay takes none
    that arrived after the page was drawn."""
    text = str(form.get("upto", "")).strip()
    if not text.isdecimal():
        raise InvalidRequestError(f"upto {text!r} is not an exception id; replay from the "
                                  "exceptions page's own form")
    return int(text)


async def replay_matching(request: Request) -> Response:
    chosen = _filter(request)
    form = await authorize(request)  # nothing is read for who may not act
    upto = _upto(form)
    streams = context(request).streams

    def pending() -> list[Summary]:
        found = scan(streams)
        done = replayed_in(streams, {s.group for s in found.summaries})
        return [s for s in _pending(found, chosen, done) if s.id <= upto]

    before = await run_in_threadpool(pending)
    confirmed(form, str(len(before)))
    if not before:
        raise InvalidRequestError("nothing to replay: every exception matching this filter "
                                  "was replayed already or was reported, not failed")
    ids = [s.id for s in before]

    def work() -> None:
        replay(streams, read_many(streams, ids))

    await run_in_threadpool(work)
    query = chosen.query()
    named = ",".join(map(str, ids[:_NAMED]))
    return RedirectResponse(f"/exceptions?{query}{'&' if query else ''}replayed={named}"
                            f"&count={len(ids)}", status_code=303)


routes: list[BaseRoute] = [
    Route("/exceptions", exceptions_page, methods=["GET"]),
    Route("/exceptions/replay", replay_matching, methods=["POST"]),
    Route("/exceptions/{ident:int}", exception_page, methods=["GET"]),
    Route("/exceptions/{ident:int}/replay", replay_one, methods=["POST"]),
    Route("/api/exceptions", exceptions_api, methods=["GET"]),
]
