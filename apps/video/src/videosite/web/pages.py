"""The server-rendered pages (gallery, video, upload) and the media they show; the ops page
is ``ops``'s.

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
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape

from millstream.console import TEMPLATES as CONSOLE_TEMPLATES
from videosite.titles import shown

from ._stages import percent, stage_states
from .api import is_video_id, readable, site_of
from .ranges import serve_file
from .site import MEDIA_TYPES, media_files

__all__ = ["render", "router", "templates"]

router = APIRouter()
#: the site's own templates, and the console's under ``console/`` (the ops page uses its
#: pieces: ``{% import "console/_pieces.html" as console %}``)
templates = Environment(
    loader=ChoiceLoader([
        FileSystemLoader(Path(__file__).parent / "templates"),
        PrefixLoader({"console": FileSystemLoader(CONSOLE_TEMPLATES)}),
    ]),
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


def when(seconds: float) -> str:
    """A moment (seconds since the epoch) in UTC, to the minute: '2026-12-06 14:05 UTC'."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(count: int) -> str:
    """A byte count as the upload form says it: '1 GiB', '512 MiB', '300 KiB', '12 bytes'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.3g} {unit}"
    return f"{count} bytes"


templates.filters["duration"] = duration
templates.filters["shown"] = shown
templates.filters["hour_utc"] = hour_utc
templates.filters["views"] = views
templates.filters["when"] = when
templates.filters["percent"] = percent
templates.filters["stage_states"] = stage_states


def render(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context))


@readable(router, "/", response_class=HTMLResponse)
async def gallery(request: Request) -> HTMLResponse:
    site = site_of(request)
    videos = await asyncio.to_thread(site.videos)
    trending = await asyncio.to_thread(site.trending, site.clock())
    catalog = {v.video_id: v for v in videos}
    progress = {v.video_id: await asyncio.to_thread(site.progress, v.video_id)
                for v in videos if v.status == "processing"}
    return render("gallery.html", videos=videos, trending=trending, catalog=catalog,
                  progress=progress, title="Videos", page="gallery")


#: cards one /fragments/cards answer draws at most
MAX_CARDS = 50


@readable(router, "/fragments/cards", response_class=HTMLResponse)
async def cards(request: Request, ids: str = "") -> HTMLResponse:
    """The gallery cards of the videos ``ids`` (comma-separated, at most ``MAX_CARDS``), as
    the gallery draws them: an open gallery adds the ones it has not shown. Ids with no
    video yet are left out."""
    wanted = [part for part in ids.split(",") if part]
    bad = next((part for part in wanted if not is_video_id(part)), None)
    if bad is not None:
        raise HTTPException(400, f"{bad[:40]!r} is not a video id (16 hex digits)")
    if len(wanted) > MAX_CARDS:
        raise HTTPException(400, f"{len(wanted)} ids asked for; at most {MAX_CARDS} at once")
    site = site_of(request)

    def draw() -> str:
        card = templates.get_template("_card.html")
        drawn = []
        for video_id in dict.fromkeys(wanted):
            video = site.video(video_id)
            if video is not None:
                progress = site.progress(video_id) if video.status == "processing" else {}
                drawn.append(card.render(video=video, p=progress))
        return "".join(drawn)

    return HTMLResponse(await asyncio.to_thread(draw), headers={"Cache-Control": "no-store"})


@readable(router, "/videos/{video_id}", response_class=HTMLResponse)
async def video_page(video_id: str, request: Request) -> HTMLResponse:
    site = site_of(request)
    video = (await asyncio.to_thread(site.video, video_id)
             if is_video_id(video_id) else None)
    if video is None:
        raise HTTPException(404, "no such video")
    hours = await asyncio.to_thread(site.views_per_hour, video_id, site.clock())
    series = json.dumps({"start": [h.start for h in hours], "views": [h.views for h in hours]})
    progress = (await asyncio.to_thread(site.progress, video_id)
                if video.status == "processing" else {})
    return render("video.html", video=video, title=shown(video.title), hours=hours,
                  series=series, viewed=sum(h.views for h in hours), chart=True,
                  progress=progress, page="video")


@readable(router, "/upload", response_class=HTMLResponse)
async def upload_page(request: Request) -> HTMLResponse:
    return render("upload.html", title="Upload", page="upload",
                  max_upload=size(site_of(request).settings.max_upload_bytes))


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
