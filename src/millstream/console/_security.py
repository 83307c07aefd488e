"""Who may act, and what every answer carries.

The console shows everything to whoever reaches it (bind it to localhost or put it behind
your proxy) and acts only for who holds the token given with ``--token``:

* without a token the console is read-only: every action is refused (403);
* a person signs in at ``/signin`` with the token; the answer sets an HttpOnly, SameSite=Strict
  cookie holding the sign-in time and an HMAC of it keyed by the token (never the token
  itself), good for ``SESSION_S``; wrong tokens from one address are throttled
  (``_signins``);
* an action is a POST that carries that cookie, the CSRF field ``csrf`` (another HMAC of the
  token, put in every form of a signed-in page) and comes from this console's own origin
  (``Origin``, else ``Referer``); a script may send ``Authorization: Bearer <token>`` instead
  of the cookie and the CSRF field;
* and it is confirmed: the form's ``confirm`` field must be the name of what is acted on,
  typed by the person.

``action(request, confirm=name)`` checks all of it and returns the form. ``SecurityHeaders``
puts the CSP (no inline script or style) and its companions on every answer.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from millstream.console._context import context
from millstream.console._limits import MAX_FORM_BYTES, SESSION_S

__all__ = ["CSP", "HEADERS", "SESSION_COOKIE", "ActionRefused", "SecurityHeaders", "action",
           "authorize", "confirmed", "csrf_value", "same_origin", "session_valid", "session_value",
           "signed_in", "token_matches"]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
           "referrer-policy": "same-origin", "x-frame-options": "DENY",
           "cache-control": "no-store"}
SESSION_COOKIE = "millstream_console"


class ActionRefused(HTTPException):
    """An action the console will not do; ``detail`` says why and what to do."""


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_value(token: str, issued: float | None = None) -> str:
    """The session cookie's value for ``token``, issued at ``issued`` (epoch seconds; now when
    not given): the time and an HMAC of it, so a session ends ``SESSION_S`` after sign-in."""
    at = int(time.time() if issued is None else issued)
    return f"{at}.{_mac(token, f'millstream console session {at}')}"


def session_valid(value: str, token: str, now: float | None = None) -> bool:
    """True when ``value`` is a session cookie of ``token`` issued less than ``SESSION_S``
    ago (and not in the future, give or take a minute of clock step)."""
    if not value.isascii():  # a cookie is whatever the client sends
        return False
    issued, _, mac = value.partition(".")
    if not issued.isdecimal() or len(issued) > 12:
        return False
    expected = _mac(token, f"millstream console session {issued}")
    if not hmac.compare_digest(mac, expected):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -60 <= age < SESSION_S


def csrf_value(token: str) -> str:
    """The CSRF field every form of a signed-in page carries."""
    return _mac(token, "millstream console csrf")


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def signed_in(request: Request) -> bool:
    """True when the request carries the session cookie of this console's token."""
    token = context(request).token
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return token is not None and session_valid(cookie, token)


def _bearer(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


def same_origin(request: Request) -> bool:
    """True when the request says it comes from this console's own pages."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)


async def authorize(request: Request) -> FormData:
    """The form of an action once the token and, for a session, the origin and the CSRF field
    allow it; else ``ActionRefused`` (403) saying why. Nothing is read or done before this."""
    token = context(request).token
    if token is None:
        raise ActionRefused(403, "the console is read-only: start it with --token to allow "
                                 "actions")
    length = request.headers.get("content-length")
    if length is not None and length.isdecimal() and int(length) > MAX_FORM_BYTES:
        raise ActionRefused(413, f"the form is {length} bytes; an action's form takes at most "
                                 f"{MAX_FORM_BYTES}")
    if _bearer(request, token):
        return await request.form()
    if not signed_in(request):
        raise ActionRefused(403, "actions need the console's token: sign in at /signin")
    if not same_origin(request):
        raise ActionRefused(403, "the action did not come from this console's pages "
                                 "(Origin/Referer): use the console's own form")
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")).encode(), csrf_value(token).encode()):
        raise ActionRefused(403, "the form's CSRF field is missing or stale: reload the "
                                 "page and try again")
    return form


def confirmed(form: FormData, confirm: str) -> None:
    """Refuse (400) unless the form's ``confirm`` field is ``confirm``, as typed."""
    typed = str(form.get("confirm", "")).strip()
    if typed != confirm:
        shown = typed if len(typed) <= 80 else typed[:77] + "..."
        raise ActionRefused(400, f"confirmation {shown!r} does not match: type {confirm!r} to "
                                 f"confirm")


async def action(request: Request, *, confirm: str) -> FormData:
    """The form of an action on ``confirm`` (a group, stream, table, shadow or exception id)
    once the token, the CSRF check and the typed confirmation allow it; else ``ActionRefused``
    (403, or 400 for a wrong confirmation) saying why. An action whose confirmation depends on
    what it reads calls ``authorize`` first, then reads, then ``confirmed``."""
    form = await authorize(request)
    confirmed(form, confirm)
    return form


class SecurityHeaders:
    """Adds ``HEADERS`` to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._raw = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {name.lower() for name, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in self._raw if k not in have)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
