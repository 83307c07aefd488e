"""What an action did, kept briefly for the page it redirects to (post, redirect, get): the
page is then shown by a GET, so reloading it shows the outcome again instead of acting again.

An outcome is kept under a random id given in the redirect's query (``?outcome=<id>``); the
newest ``KEEP`` are kept, in memory. They say what the page would show anyway (no secret)."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse

__all__ = ["KEEP", "outcome", "redirect_with"]

KEEP = 64
_kept: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def redirect_with(path: str, value: Any) -> RedirectResponse:
    """A 303 to ``path`` (a path on this console) carrying ``value`` for its page."""
    key = secrets.token_urlsafe(12)
    with _lock:
        _kept[key] = value
        while len(_kept) > KEEP:
            _kept.popitem(last=False)
    return RedirectResponse(f"{path}?outcome={key}", status_code=303)


def outcome(request: Request) -> Any:
    """The outcome the request's ``?outcome=`` names, or None (unknown or forgotten)."""
    key = request.query_params.get("outcome", "")
    with _lock:
        return _kept.get(key)
