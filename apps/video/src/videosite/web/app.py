"""``create_app``: the video site's web server (FastAPI) over a millstream platform.

The platform comes from the arguments or, for what is not given, from the usual
configuration (``MILLSTREAM_HOME``, ``MILLSTREAM_STREAMS``/``_FILES``/``_TABLES``). Every
response carries a Content-Security-Policy that allows only the site's own scripts, styles
and media, and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from millstream import open_streams
from millstream.files import FileStore, open_files
from millstream.tables import Tables, open_tables

from . import api, pages
from .settings import WebSettings
from .site import Site

__all__ = ["CSP", "SecurityHeaders", "create_app"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """Middleware: adds the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in _HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(streams_url: str | None = None, files: FileStore | None = None,
               tables: Tables | None = None, token: str | None = None,
               settings: WebSettings | None = None, **overrides: Any) -> FastAPI:
    """The web app. ``files``/``tables`` given are the caller's to close; the ones opened
    here (and the streams) close when the app shuts down. ``token`` (else
    ``VIDEOSITE_API_TOKEN``) is what uploads need; ``overrides`` set other WebSettings."""
    settings = settings or WebSettings.from_env(token=token, **overrides)
    streams = open_streams(streams_url)
    owned: list[Any] = []
    if files is None:
        files = open_files()
        owned.append(files)
    if tables is None:
        tables = open_tables()
        owned.append(tables)
    site = Site(streams, files, tables, settings, owned=(*owned, streams))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await site.writer.aclose()
            site.close()

    web = FastAPI(title="videosite", lifespan=lifespan, docs_url=None, redoc_url=None)
    web.state.site = site
    web.include_router(api.router)
    web.include_router(pages.router)
    web.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"),
              name="static")
    web.add_middleware(SecurityHeaders)
    return web
