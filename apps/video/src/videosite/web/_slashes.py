"""The router's fallback for a path no route matches: a redirect to the same path with (or
without) its trailing slash when that matches a route, else the router's 404.

The framework's own redirect builds an absolute ``Location`` from the request's ``Host``
header, so a forged ``Host`` sends the visitor to another site. This one answers a
*relative* ``Location`` (the path and query only), and never one that a browser would read
as another host (``//host`` or ``/\\host``).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send

__all__ = ["SlashRedirect", "other_slash"]

#: what stays unquoted in a Location path (RFC 3986 pchar and "/")
_SAFE = "/:@!$&'()*+,;=-._~"


def other_slash(path: str) -> str | None:
    """``path`` with its trailing slashes removed, or with one added; None when the result
    could be read as another host, or for the root."""
    if path in ("", "/") or path.startswith(("//", "/\\")):
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    return other if other.startswith("/") and not other.startswith(("//", "/\\")) else None


class SlashRedirect:
    """``router.default``: 307 to the relative path that matches a route, else 404."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path: str = scope["path"]
            route_path = path[len(root):] if root and path.startswith(root) else path
            other = other_slash(route_path)
            if other is not None and any(
                    route.matches({**scope, "path": root + other})[0] is not Match.NONE
                    for route in self.router.routes):
                location = quote(root + other, safe=_SAFE)
                query = scope.get("query_string", b"")
                if query:
                    location += "?" + query.decode("latin-1")
                await Response(status_code=307, headers={"Location": location})(
                    scope, receive, send)
                return
        await self.router.not_found(scope, receive, send)
