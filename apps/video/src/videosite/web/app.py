"""``create_app``: the video site's web server (FastAPI) over a millstream platform.

The platform comes from the arguments or, for what is not given, from the usual
configuration (``MILLSTREAM_HOME``, ``MILLSTREAM_STREAMS``/``_FILES``/``_TABLES``). Every
response carries a Content-Security-Policy that allows only the site's own scripts, styles
and media, ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY`` (``_edge``: the
middleware sits outside the error handling, so errors carry them too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from millstream import open_streams
from millstream.console import STATIC as CONSOLE_STATIC
from millstream.files import FileStore, open_files
from millstream.tables import Tables, open_tables

from . import api, ops, pages, viewing
from ._edge import CSP, HeadWithoutBody, SecurityHeaders
from ._slashes import SlashRedirect
from .settings import WebSettings
from .site import Site

__all__ = ["CSP", "SecurityHeaders", "create_app"]


class _SiteApp(FastAPI):
    """The FastAPI app with the edge middleware outermost, around the framework's own error
    handling (``ServerErrorMiddleware``); ``add_middleware`` would put it inside, where the
    500s it builds never pass."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(HeadWithoutBody(super().build_middleware_stack()))


def create_app(streams_url: str | None = None, files: FileStore | None = None,
               tables: Tables | None = None, token: str | None = None,
               settings: WebSettings | None = None, clock: Callable[[], float] | None = None,
               **overrides: Any) -> FastAPI:
    """The web app. ``files``/``tables`` given are the caller's to close; the ones opened
    here (and the streams) close when the app shuts down. ``token`` (else
    ``VIDEOSITE_API_TOKEN``) is what uploads need; ``overrides`` set other WebSettings.
    ``clock`` (default ``time.time``) is the site's (``Site``)."""
    settings = settings or WebSettings.from_env(token=token, **overrides)
    streams = open_streams(streams_url)
    owned: list[Any] = []
    if files is None:
        files = open_files()
        owned.append(files)
    if tables is None:
        tables = open_tables()
        owned.append(tables)
    site = Site(streams, files, tables, settings, owned=(*owned, streams),
                **({} if clock is None else {"clock": clock}))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await site.writer.aclose()
            site.close()

    web = _SiteApp(title="videosite", lifespan=lifespan, docs_url=None, redoc_url=None,
                   redirect_slashes=False)
    web.router.default = SlashRedirect(web.router)
    web.state.site = site
    web.include_router(api.router)
    web.include_router(viewing.router)
    web.include_router(pages.router)
    web.include_router(ops.router)
    web.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"),
              name="static")
    # the console's stylesheet and scripts: the ops page shows health as the console does
    web.mount("/console-static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    return web
