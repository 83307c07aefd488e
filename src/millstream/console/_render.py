"""Pages from templates: one Jinja2 environment with autoescape on, the base template's
values, and the filters every page uses to show numbers, sizes and times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from millstream.console._context import context
from millstream.console._limits import POLL_MS
from millstream.console._security import csrf_value, signed_in

__all__ = ["NAV", "TEMPLATES", "environment", "fmt_bytes", "fmt_rate", "fmt_time", "json_answer",
           "render"]

TEMPLATES = Path(__file__).with_name("templates")
#: the navigation bar: (the page's ``active`` name, its title, its path)
NAV = (("overview", "Overview", "/"), ("streams", "Streams", "/streams"),
       ("groups", "Groups", "/groups"), ("exceptions", "Exceptions", "/exceptions"),
       ("tables", "Tables", "/tables"), ("shadows", "Shadows", "/shadows"))


def fmt_rate(value: float | None) -> str:
    """Records per second for people: ``0``, ``0.4/s``, ``12/s``, ``3.4K/s``."""
    if value is None:
        return "–"
    if value == 0:
        return "0/s"
    if value < 10:
        return f"{value:.1f}/s"
    if value < 1000:
        return f"{value:.0f}/s"
    if value < 1_000_000:
        return f"{value / 1000:.1f}K/s"
    return f"{value / 1_000_000:.1f}M/s"


def fmt_bytes(value: int | None) -> str:
    """A size for people: ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fmt_time(ms: int | None) -> str:
    """A record time (milliseconds since the epoch) as UTC ``2026-12-06 17:40:03``."""
    if ms is None:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(rate=fmt_rate, bytes=fmt_bytes, time=fmt_time)
    env.globals.update(nav=NAV, poll_ms=POLL_MS)
    return env


_ENV = environment()


def render(request: Request, template: str, *, title: str, active: str = "",
           status: int = 200, **values: Any) -> HTMLResponse:
    """The page ``template`` (extending ``base.html``) with ``values``; the base gets the
    title, the active tab, whether the console is read-only or signed in, and the CSRF field
    for a signed-in page's forms."""
    ctx = context(request)
    signed = signed_in(request)
    page = _ENV.get_template(template).render(
        request=request, title=title, active=active, read_only=ctx.read_only, signed_in=signed,
        csrf=csrf_value(ctx.token) if signed and ctx.token is not None else "",
        streams_url=ctx.streams_url, history_error=ctx.history.error, **values)
    return HTMLResponse(page, status_code=status)


def json_answer(data: Any, status: int = 200) -> Response:
    """``data`` as JSON (``json.dumps``: strings are escaped, never pasted)."""
    body = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")
