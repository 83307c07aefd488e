"""What every response of the site gets, whatever produced it: the security headers, and no
body for ``HEAD``.

Both are pure ASGI middleware. ``create_app`` puts them outside everything else, the error
handling included, so a 500 built by the framework for an unhandled exception, a 404 for an
unknown path and a 413 from the upload carry the same headers as a page.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "HEADERS", "HeadWithoutBody", "SecurityHeaders"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
#: the security headers, as every response carries them (a response's own value wins)
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
           "referrer-policy": "same-origin", "x-frame-options": "DENY"}
_RAW = [(name.encode(), value.encode()) for name, value in HEADERS.items()]


class SecurityHeaders:
    """Adds the security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in headers}
                message["headers"] = [*headers, *(h for h in _RAW if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


class HeadWithoutBody:
    """Answers ``HEAD`` as the app answers ``GET`` (same status and headers, the
    ``Content-Length`` of the body ``GET`` would send) but sends no body, whatever server
    runs the app. The routes accept ``HEAD`` beside ``GET``; media skip reading the object."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, without_body)
