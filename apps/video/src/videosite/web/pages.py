"""The server-rendered pages (gallery, video, upload, ops) and the media they show.

The gallery leads with "Trending now" (the most viewed videos of the current view window)
and a video page shows its views per clock hour over the last day: a list, and a chart the
kept uPlot library draws from the page's data (``/static/vendor/``, fetched by the build).

Templates are Jinja2 with autoescaping on: every title, file name and message is escaped,
and a title is shown without control, line-separator and bidi-override characters
(``videosite.titles.shown``), however it was stored.
No page has inline script or style; ``/static/site.js`` and ``/static/site.css`` do the rest.
Media are served only as objects a catalogued video refers to (``/media/<id>/<name>``),
never the uploaded original, with range support.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from videosite.titles import shown

from .api import check_ops_access, is_video_id, readable, site_of
from .ranges import serve_file
from .site import MEDIA_TYPES, media_files

__all__ = ["router"]

router = APIRouter()
templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(default=True, default_for_string=True))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def hour_utc(ms: int) -> str:
    """The clock hour starting at ``ms`` (since the epoch), in UTC: '2026-12-06 14:00'."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:00")


def views(count: int) -> str:
    return f"{count} view" if count == 1 else f"{count} views"


templates.filters["duration"] = duration
templates.filters["shown"] = shown
templates.filters["hour_utc"] = hour_utc
templates.filters["views"] = views


def render(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context))


@readable(router, "/", response_class=HTMLResponse)
async def gallery(request: Request) -> HTMLResponse:
    site = site_of(request)
    videos = await asyncio.to_thread(site.videos)
    trending = await asyncio.to_thread(site.trending, site.clock())
    catalog = {v.video_id: v for v in videos}
    return render("gallery.html", videos=videos, trending=trending, catalog=catalog,
                  title="Videos")


@readable(router, "/videos/{video_id}", response_class=HTMLResponse)
async def video_page(video_id: str, request: Request) -> HTMLResponse:
    site = site_of(request)
    video = (await asyncio.to_thread(site.video, video_id)
             if is_video_id(video_id) else None)
    if video is None:
        raise HTTPException(404, "no such video")
    hours = await asyncio.to_thread(site.views_per_hour, video_id, site.clock())
    series = json.dumps({"start": [h.start for h in hours], "views": [h.views for h in hours]})
    return render("video.html", video=video, title=shown(video.title), hours=hours,
                  series=series, viewed=sum(h.views for h in hours), chart=True)


@readable(router, "/upload", response_class=HTMLResponse)
async def upload_page() -> HTMLResponse:
    return render("upload.html", title="Upload")


@readable(router, "/ops", response_class=HTMLResponse)
async def ops_page(request: Request) -> HTMLResponse:
    """The services' metrics and the latest exceptions (with their messages and ids): only
    with the API token, unless ``ops_public``."""
    site = site_of(request)
    check_ops_access(request, site)
    view = await asyncio.to_thread(site.ops)
    services = view.metrics.services if view.metrics is not None else ()
    return render("ops.html", services=services, exceptions=view.exceptions, title="Ops")


@readable(router, "/media/{video_id}/{name}")
async def media(video_id: str, name: str, request: Request) -> Response:
    """A rendition, playlist, poster or still of a catalogued video; ranges honoured."""
    site = site_of(request)
    video = (await asyncio.to_thread(site.video, video_id)
             if is_video_id(video_id) else None)
    ref = media_files(video).get(name) if video is not None else None
    if ref is None:
        raise HTTPException(404, "no such file")
    return serve_file(site.files, ref, MEDIA_TYPES, range_header=request.headers.get("range"),
                      if_none_match=request.headers.get("if-none-match"),
                      head=request.method == "HEAD", download_name=name)
