"""The players' view events: ``POST /api/views``.

A player sends ``{"video_id", "event", "session", "position_s"}`` as JSON: ``event`` is
``start`` (a playback began: one view), ``progress`` (about every 10 s of playback) or
``end`` (it ended, or the page was left); ``session`` is the player's random id for that
playback, 16 lowercase hex digits; ``position_s`` where in the video, in seconds. The site
stamps the event with its own clock (``at``) and sends it to stream ``views`` keyed by the
video id, waiting until it is stored: 202 then.

Refused, each with a reason naming the value: a client over its limit (429 with
``Retry-After``; the throttle is per client address, ``VIDEOSITE_VIEW_BURST`` events at once,
then ``VIDEOSITE_VIEW_RATE`` per second, and counts refused events too), a body that is not
JSON (415 without ``Content-Type: application/json``, which also keeps other sites' plain
forms out), over 1 KiB (413), not a view event (422), a video the catalog does not have
(404) or has not finished (409). A refused event is not sent anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from millstream import MillstreamError
from videosite.app import views
from videosite.models import View, ViewEvent

from .api import is_video_id, site_of
from .upload import RETRY_AFTER_S

__all__ = ["EVENTS", "FIELDS", "MAX_BODY", "ViewRefused", "parse_view", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")
#: the largest body of a view event
MAX_BODY = 1024
EVENTS: tuple[str, ...] = get_args(ViewEvent)
FIELDS = ("video_id", "event", "session", "position_s")
SESSION = re.compile(r"\A[0-9a-f]{16}\Z")
#: the largest position accepted (a day of video)
MAX_POSITION_S = 86_400.0


class ViewRefused(Exception):
    """A view event the site does not take: ``status``, ``reason`` and, for 429 and 503,
    the seconds to wait."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return JSONResponse({"detail": self.reason}, status_code=self.status, headers=headers)


def parse_view(body: bytes, at: float) -> View:
    """The view event in ``body`` (JSON), stamped ``at``; ``ViewRefused`` (422) naming what
    is wrong with it."""
    try:
        doc: Any = json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        raise ViewRefused(422, "the body is not JSON: send a view event as a JSON object "
                               f"with {', '.join(FIELDS)}") from None
    if not isinstance(doc, dict):
        raise ViewRefused(422, f"a view event is a JSON object with {', '.join(FIELDS)}, "
                               f"not {type(doc).__name__}")
    missing = [f for f in FIELDS if f not in doc]
    unknown = sorted(set(doc) - set(FIELDS))
    if missing or unknown:
        wrong = ([f"missing {', '.join(missing)}"] if missing else []) \
            + ([f"unknown {', '.join(map(repr, unknown))}"] if unknown else [])
        raise ViewRefused(422, f"a view event has exactly the fields {', '.join(FIELDS)} "
                               f"({'; '.join(wrong)})")
    video_id, event, session, position = (doc[f] for f in FIELDS)
    if not isinstance(video_id, str) or not is_video_id(video_id):
        raise ViewRefused(422, f"video_id {video_id!r} is not a video id (16 lowercase hex "
                               "digits)")
    if event not in EVENTS:
        raise ViewRefused(422, f"event {event!r} is not one of {', '.join(EVENTS)}")
    if not isinstance(session, str) or SESSION.fullmatch(session) is None:
        raise ViewRefused(422, f"session {session!r} is not a playback id (16 lowercase hex "
                               "digits, new for each playback)")
    if isinstance(position, bool) or not isinstance(position, int | float) \
            or not math.isfinite(position) or not 0 <= position <= MAX_POSITION_S:
        raise ViewRefused(422, f"position_s {position!r} is not a number of seconds from 0 "
                               f"to {MAX_POSITION_S:g}")
    return View(video_id=video_id, event=event, session=session, position_s=float(position),
                at=at)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > MAX_BODY:
        raise ViewRefused(413, f"a view event is at most {MAX_BODY} bytes, not {declared}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ViewRefused(413, f"a view event is at most {MAX_BODY} bytes")
    return body


@router.post("/views", status_code=202)
async def record_view(request: Request) -> JSONResponse:
    """Check a player's view event and send it to stream ``views`` (see the module)."""
    site = site_of(request)
    client = request.client.host if request.client is not None else "unknown"
    try:
        verdict = site.view_throttle.take(client)
        if not verdict.accepted:
            raise ViewRefused(429, f"too many view events from {client}: the limit is "
                                   f"{site.view_throttle.describe()}; retry after "
                                   f"{verdict.retry_after_s} s", verdict.retry_after_s)
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise ViewRefused(415, f"a view event is sent as application/json, not "
                                   f"{kind or 'a body without Content-Type'}")
        view = parse_view(await _body(request), site.clock())
        video = await asyncio.to_thread(site.video, view.video_id)
        if video is None:
            raise ViewRefused(404, f"no video {view.video_id} in the catalog: views are "
                                   "counted for catalogued videos only")
        if video.status != "ready":
            raise ViewRefused(409, f"video {view.video_id} is {video.status}, not ready: it "
                                   "has nothing to play, so no view of it is counted")
        try:
            await site.send(views.name, view, key=view.video_id)
        except (MillstreamError, TimeoutError) as exc:
            why = str(exc) or "the streams did not confirm it in time"
            log.warning("view event of %s not stored: %s", view.video_id, why)
            raise ViewRefused(503, f"the view event could not be stored ({why}): send it "
                                   "again later", RETRY_AFTER_S) from exc
    except ViewRefused as refused:
        if refused.status != 429:
            log.info("view event refused (%s): %s", refused.status, refused.reason)
        return refused.response()
    return JSONResponse({"video_id": view.video_id, "event": view.event, "at": view.at},
                        status_code=202)
