"""The console's Starlette app: its pages' routes, sign-in, static files, error pages and the
security headers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from millstream.console import _pages as pages
from millstream.console._context import ConsoleContext, context
from millstream.console._history import DEFAULT_KEEP, MetricsHistory
from millstream.console._limits import SESSION_S
from millstream.console._render import json_answer, render
from millstream.console._security import (
    HEADERS,
    SESSION_COOKIE,
    SecurityHeaders,
    same_origin,
    session_value,
    token_matches,
)
from millstream.errors import MillstreamError, NotFoundError
from millstream.streams._base import Streams

if TYPE_CHECKING:
    from millstream.files import FileStore
    from millstream.tables import Tables

__all__ = ["LOOPBACK", "STATIC", "build_app", "create_app", "redacted"]

STATIC = Path(__file__).with_name("static")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or \
        "application/json" in request.headers.get("accept", "")


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
        if status == 404 and message == "Not Found":  # no route: say which path
            message = f"the console has no page at {request.url.path}"
    elif isinstance(exc, NotFoundError):
        status, message = 404, str(exc)
    else:  # a MillstreamError: bad input or a store that refused, said in its own words
        status, message = 400, str(exc)
    if _wants_json(request):
        answer = json_answer({"error": message}, status)
    else:
        answer = render(request, "error.html", title=f"{status}", status=status,
                        message=message)
    if isinstance(exc, HTTPException) and exc.headers:
        answer.headers.update(exc.headers)
    return answer


async def _crash(request: Request, exc: Exception) -> Response:
    """A bug (500): said without its details, and with the security headers (this answer
    comes from outside the middleware that adds them). Starlette raises the exception on
    after this answer, so the server logs its traceback."""
    message = (f"the console failed on this request ({type(exc).__name__}); its log has "
               "the details")
    try:
        answer = (json_answer({"error": message}, 500) if _wants_json(request) else
                  render(request, "error.html", title="500", status=500, message=message))
    except Exception:  # the page itself failed: plain words
        answer = PlainTextResponse(message, status_code=500)
    answer.headers.update(HEADERS)
    return answer


def _local(path: str) -> str:
    """``path`` when it is a path on this console, else ``/`` (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


async def signin_page(request: Request) -> Response:
    return render(request, "signin.html", title="Sign in",
                  next=_local(request.query_params.get("next", "/")), failed=False)


async def signin(request: Request) -> Response:
    ctx = context(request)
    if ctx.token is None:
        raise HTTPException(403, "the console is read-only: start it with --token to allow "
                                 "actions")
    if not same_origin(request):
        raise HTTPException(403, "sign in from the console's own page")
    address = request.client.host if request.client is not None else "?"
    wait = ctx.signins.wait(address)
    if wait > 0:  # the token is not even looked at
        seconds = math.ceil(wait)
        raise HTTPException(429, f"{ctx.signins.tries} wrong tokens from {address} within "
                                 f"{ctx.signins.window_s:.0f} s: try again in {seconds} s",
                            headers={"retry-after": str(seconds)})
    form = await request.form()
    target = _local(str(form.get("next", "/")))
    if not token_matches(str(form.get("token", "")), ctx.token):
        ctx.signins.failed(address)
        # the form again, saying so (200: the browser shows it as the page it is)
        return render(request, "signin.html", title="Sign in", next=target, failed=True)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(SESSION_COOKIE, session_value(ctx.token), max_age=SESSION_S,
                      httponly=True, samesite="strict", secure=request.url.scheme == "https",
                      path="/")
    return answer


async def signout(request: Request) -> Response:
    if not same_origin(request):
        raise HTTPException(403, "sign out from the console's own page")
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


#: the names a console answers to by default: this machine's loopback (a page elsewhere whose
#: name was re-pointed at 127.0.0.1 — DNS rebinding — is refused: its Host is its own name)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def redacted(url: str) -> str:
    """``url`` without its query and credentials (a Kafka URL's query may hold a SASL
    password): what the pages and the command line show."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def build_app(ctx: ConsoleContext, *, allowed_hosts: Sequence[str] = LOOPBACK) -> Starlette:
    """The console for ``ctx``: every page's routes, sign-in, and ``/static``; it answers
    only requests whose Host is one of ``allowed_hosts`` (``"*"``: any)."""
    routes: list[BaseRoute] = [
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        *pages.routes(),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
                    exception_handlers={HTTPException: _error, MillstreamError: _error,
                                        Exception: _crash})
    app.state.console = ctx
    return app


def create_app(streams: Streams, *, token: str | None = None, keep: float = DEFAULT_KEEP,
               open_files: Callable[[], FileStore] | None = None,
               open_tables: Callable[[], Tables] | None = None, streams_url: str = "",
               clock: Callable[[], float] = time.time,
               allowed_hosts: Sequence[str] = LOOPBACK) -> Starlette:
    """The console for ``streams``: read-only unless ``token`` is given; its charts keep the
    last ``keep`` seconds of metrics (read from the stream at once, then tailed).
    ``open_files`` and ``open_tables`` are called at first use and what they return belongs
    to the console: ``app.state.console.close()`` stops the history and closes the tables
    (give openers of handles of its own, not ones shared elsewhere). It answers requests for
    ``allowed_hosts`` only (the names in their Host header; default: the loopback names).
    ``streams_url`` is shown without its query or credentials."""
    if token is not None and len(token) < 8:
        raise ValueError("the console's token must be 8 characters or more (it guards the "
                         "actions); pick a longer one")
    history = MetricsHistory(streams, keep=keep, clock=clock).start()
    ctx = ConsoleContext(streams=streams, history=history, token=token, open_files=open_files,
                         open_tables=open_tables, streams_url=redacted(streams_url))
    return build_app(ctx, allowed_hosts=allowed_hosts)
