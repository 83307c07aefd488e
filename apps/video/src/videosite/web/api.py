"""The JSON API: ``POST /api/videos`` (upload, needs the API token), ``GET /api/videos``
(the catalog's newest, as the gallery lists them) and ``GET /api/videos/{id}`` (status,
progress per stage and metadata)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from millstream import MillstreamError
from millstream.faults import fault_point
from millstream.files import pinned
from videosite.models import Upload
from videosite.pipeline import UPLOADS, new_video_id
from videosite.titles import MAX_TITLE

from .site import Site
from .upload import RETRY_AFTER_S, UploadRefused, receive_upload

__all__ = ["MAX_TITLE", "VIDEO_ID", "check_ops_access", "check_token", "is_video_id",
           "readable", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
#: a video id, whole: use ``is_video_id`` (``^...$`` with ``match`` would let a trailing
#: newline through, and the id would reach the stores)
VIDEO_ID = re.compile(r"\A[0-9a-f]{16}\Z")


def is_video_id(text: str) -> bool:
    """Whether ``text`` is a video id, exactly (16 lowercase hex digits, nothing else)."""
    return VIDEO_ID.fullmatch(text) is not None


def readable(on: APIRouter, path: str, **options: Any) -> Callable[[F], F]:
    """``on.get(path)``, and the same route for ``HEAD`` (its own operation in the schema):
    every page, medium and status answers ``HEAD`` as it answers ``GET``, without the body
    (``_edge.HeadWithoutBody``)."""

    def register(endpoint: F) -> F:
        on.head(path, operation_id=f"{endpoint.__name__}_head", **options)(endpoint)
        return on.get(path, operation_id=endpoint.__name__, **options)(endpoint)

    return register


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def _is_token(given: str, site: Site) -> bool:
    expected = site.settings.token
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def check_token(request: Request, site: Site) -> None:
    """401 unless ``Authorization: Bearer <the configured token>``."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not _is_token(given.strip(), site):
        raise HTTPException(401, "an API token is needed (Authorization: Bearer ...)",
                            headers={"WWW-Authenticate": "Bearer"})


def check_ops_access(request: Request, site: Site) -> None:
    """401 unless the ops page is public (``ops_public``) or the request carries the API
    token: ``Authorization: Bearer <token>``, or Basic with the token as the password (what
    a browser sends after asking; the user name is not looked at)."""
    if site.settings.ops_public:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            given = ""
        given = given.partition(":")[2]
    elif scheme.lower() == "bearer":
        given = given.strip()
    else:
        given = ""
    if given and _is_token(given, site):
        return
    if site.settings.token is None:
        detail = ("the ops page is closed: no API token is set; set VIDEOSITE_API_TOKEN "
                  "(and log in with it) or VIDEOSITE_OPS_PUBLIC=true")
    else:
        detail = ("the ops page needs the API token: Authorization: Bearer <token>, or log "
                  "in with any user name and the token as the password")
    raise HTTPException(401, detail, headers={
        "WWW-Authenticate": 'Basic realm="videosite ops", charset="UTF-8"'})


def _refused(exc: UploadRefused) -> JSONResponse:
    # the rest of the body may never be read: do not keep the connection
    headers = {"Connection": "close"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)


@router.post("/videos", status_code=202)
async def upload_video(request: Request) -> JSONResponse:
    """Stream a multipart upload (fields ``file`` and ``title``) into the file store and
    queue it for processing; 202 with the id and where to follow it."""
    site = site_of(request)
    check_token(request, site)
    video_id = new_video_id()
    # the original is pinned before it is stored, until its record is acknowledged: a
    # `millstream files gc` running meanwhile (even with --older-than 0s) keeps it
    pin = pinned(site.files)
    try:
        try:
            received = await receive_upload(request.receive, request.headers, site.files,
                                            f"uploads/{video_id}/source", site.settings,
                                            pin)
        except UploadRefused as exc:
            log.info("upload refused (%s): %s", exc.status, exc.reason)
            return _refused(exc)
        upload = Upload(video_id=video_id, title=received.title, source=received.ref,
                        uploaded_at=time.time(), content_type=received.content_type,
                        size=received.ref.size)
        try:
            await asyncio.to_thread(fault_point, "videosite.upload.before_send")
            await site.send(UPLOADS, upload, key=video_id)
        except (MillstreamError, TimeoutError) as exc:
            # not deleted: a send that timed out may still be stored, and then the video is
            # processed; an original no record refers to goes with `millstream files gc`
            if isinstance(exc, TimeoutError) and not isinstance(exc, MillstreamError):
                waited = site.settings.record_timeout_s
                reason = (f"the streams did not confirm it within {waited:g} s; it may "
                          f"still be processed as video {video_id}")
            else:
                reason = str(exc)
            log.warning("upload %s stored as %s but not queued for processing: %s",
                        video_id, received.ref.url, reason)
            return _refused(UploadRefused(
                503, f"the upload could not be queued for processing ({reason}): send it "
                     "again later", retry_after=RETRY_AFTER_S))
    finally:
        await asyncio.to_thread(pin.release)
    status_url = str(request.url_for("video_status", video_id=video_id).path)
    return JSONResponse({"id": video_id, "status_url": status_url,
                         "page_url": f"/videos/{video_id}"}, status_code=202,
                        headers={"Location": status_url})


def describe(site: Site, video_id: str) -> dict[str, Any] | None:
    """The status document of one video; None if no such video was uploaded."""
    video = site.video(video_id)
    progress = {stage: {"fraction": p.fraction, "message": p.message}
                for stage, p in sorted(site.progress(video_id).items())}
    if video is None:
        if not site.uploaded(video_id):
            return None
        return {"id": video_id, "status": "queued", "progress": progress, "metadata": None}
    return {
        "id": video_id, "title": video.title, "status": video.status,
        "reason": video.reason, "failed_stage": video.failed_stage,
        "progress": progress,
        "metadata": video.metadata.model_dump() if video.metadata else None,
        "renditions": [{"name": r.name, "width": r.width, "height": r.height,
                        "url": f"/media/{video_id}/{r.name}.mp4"} for r in video.renditions],
        "hls": f"/media/{video_id}/master.m3u8" if video.hls_master else None,
        "poster": f"/media/{video_id}/poster.jpg" if video.poster else None,
        "uploaded_at": video.uploaded_at, "finished_at": video.finished_at,
    }


@readable(router, "/videos", name="video_list")
async def video_list(request: Request) -> JSONResponse:
    """The newest videos of the catalog (as the gallery shows them), newest first: id,
    status and upload time, for a gallery already open to find the ones it has not shown."""
    videos = await asyncio.to_thread(site_of(request).videos)
    return JSONResponse({"videos": [
        {"id": v.video_id, "status": v.status, "uploaded_at": v.uploaded_at} for v in videos
    ]}, headers={"Cache-Control": "no-store"})


@readable(router, "/videos/{video_id}", name="video_status")
async def video_status(video_id: str, request: Request) -> JSONResponse:
    """Status, progress per stage (latest Progress from the status stream) and metadata."""
    if not is_video_id(video_id):
        raise HTTPException(404, "no such video")
    found = await asyncio.to_thread(describe, site_of(request), video_id)
    if found is None:
        raise HTTPException(404, "no such video")
    return JSONResponse(found, headers={"Cache-Control": "no-store"})
