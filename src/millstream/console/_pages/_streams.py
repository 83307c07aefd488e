"""The console's Streams page: every stream, and one stream's partitions and records.

``/streams`` lists every stream (partitions, records, bytes, retention). ``/streams/{name}``
shows its partitions and its records decoded (``console/_decode``) in one of three views: the
live tail (the default: the newest records, and new ones as they come, fetched from
``/api/streams/{name}?after=…`` every 2 s by ``static/streams.js``), a page of one partition
from an offset or a time, or a search by key. Every read is bounded (``console/_browse``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from millstream.console._browse import (
    Page,
    Search,
    Tail,
    describe_all,
    offset_for_time,
    read_page,
    search_key,
    stream_bytes,
    tail,
)
from millstream.console._context import context
from millstream.console._decode import show_record
from millstream.console._limits import MAX_RECORDS
from millstream.console._render import fmt_time, json_answer, render
from millstream.errors import InvalidRequestError
from millstream.operations._groups import parse_time
from millstream.records import Record
from millstream.streams._base import Streams
from millstream.streams._info import StreamInfo
from millstream.streams._words import format_retention

__all__ = ["record_view", "routes"]

#: records a page of a partition shows, and the newest records the tail opens on
PAGE = 50


def record_view(record: Record) -> dict[str, object]:
    """A record as the pages and their scripts show it: position, time, key, value and
    headers decoded and bounded (``ShownRecord.as_dict``), plus ``time`` for people."""
    return {**show_record(record).as_dict(), "time": fmt_time(record.timestamp)}


def _stream_view(info: StreamInfo) -> dict[str, object]:
    return {"name": info.name, "partitions": [
        {"partition": p.partition, "start": p.start, "end": p.end, "records": p.end - p.start,
         "bytes": p.bytes} for p in info.partitions],
        "partition_count": info.partition_count, "records": info.records,
        "bytes": stream_bytes(info), "retention": format_retention(info.retention)}


def _int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    if not text.isdecimal():
        raise InvalidRequestError(f"{name} {text!r} is not a whole number ≥ 0; give one "
                                  f"such as 0 or 42")
    return int(text)


def _time_ms(text: str) -> int:
    """``2026-12-06T17:40:03`` (UTC when it names no zone), any ISO time, a span ago such as
    ``30m``, or milliseconds since the epoch."""
    text = text.strip()
    return int(text) if text.isdecimal() else parse_time(text, assume_utc=True)


def _key(request: Request) -> bytes:
    text = request.query_params.get("key", "")
    if request.query_params.get("hex"):
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidRequestError(
                f"key {text!r} is not hex: give two hex digits a byte, such as 00ff10, or "
                "untick 'hex' to search for the key as text") from None
    return text.encode("utf-8")


def _position(text: str, what: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not (sep and partition.isdecimal() and offset.isdecimal()):
        raise InvalidRequestError(f"{what} {text!r} is not PARTITION:OFFSET, such as 0:42")
    return int(partition), int(offset)


def _after(text: str) -> dict[int, int]:
    """``0:10,1:5`` as ``{0: 10, 1: 5}`` (where a tail goes on from)."""
    return dict(_position(part, "position") for part in text.split(",") if part.strip())


def _after_text(after: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(after.items()))


@dataclass
class _View:
    """What the records panel shows: one of the tail, a page, a search."""

    mode: str
    records: list[dict[str, object]]
    page: Page | None = None
    search: Search | None = None
    tail: Tail | None = None
    found_at: int | None = None  # the offset a jump by time landed on


def _view(request: Request, streams: Streams, info: StreamInfo) -> _View:
    params = request.query_params
    partition = _int(request, "partition") or 0
    if "key" in params:
        resume = params.get("resume", "").strip()
        found = search_key(streams, info.name, _key(request),
                           start=_position(resume, "resume") if resume else None)
        return _View("search", [record_view(r) for r in found.records], search=found)
    time_text = params.get("time", "").strip()
    if time_text:
        at = offset_for_time(streams, info.name, partition, _time_ms(time_text))
        page = read_page(streams, info.name, partition, at, limit=PAGE)
        return _View("page", [record_view(r) for r in page.records], page=page, found_at=at)
    offset = _int(request, "offset")
    if offset is not None or "partition" in params:
        start = info.partitions[partition].start if partition < info.partition_count else 0
        page = read_page(streams, info.name, partition, start if offset is None else offset,
                         limit=PAGE)
        return _View("page", [record_view(r) for r in page.records], page=page)
    newest = tail(streams, info.name, limit=PAGE)
    return _View("tail", [record_view(r) for r in reversed(newest.records)], tail=newest)


def streams_page(request: Request) -> Response:
    infos = describe_all(context(request).streams)
    return render(request, "streams.html", title="Streams", active="streams",
                  streams=[_stream_view(info) for info in infos])


def streams_api(request: Request) -> Response:
    infos = describe_all(context(request).streams)
    return json_answer({"streams": [_stream_view(info) for info in infos]})


def stream_page(request: Request) -> Response:
    streams = context(request).streams
    info = streams.admin().describe_stream(request.path_params["name"])
    error = ""
    try:
        view = _view(request, streams, info)
    except InvalidRequestError as exc:  # bad input: the page, saying what to give instead
        error, view = str(exc), _View("error", [])
    return render(request, "stream.html", title=info.name, active="streams",
                  stream=_stream_view(info), view=view, error=error, params=request.query_params,
                  page_size=PAGE, max_records=MAX_RECORDS,
                  after=_after_text(view.tail.after) if view.tail else "",
                  status=400 if error else 200)


def stream_api(request: Request) -> Response:
    """The stream's partitions now and, with ``after=0:10,1:5``, the records since then."""
    streams = context(request).streams
    info = streams.admin().describe_stream(request.path_params["name"])
    answer: dict[str, object] = {"stream": _stream_view(info)}
    after_text = request.query_params.get("after")
    if after_text is not None:
        new = tail(streams, info.name, _after(after_text))
        answer.update(records=[record_view(r) for r in new.records],
                      after=_after_text(new.after), skipped=new.skipped)
    return json_answer(answer)


routes: list[BaseRoute] = [
    Route("/streams", streams_page, methods=["GET"]),
    Route("/streams/{name}", stream_page, methods=["GET"]),
    Route("/api/streams", streams_api, methods=["GET"]),
    Route("/api/streams/{name}", stream_api, methods=["GET"]),
]
