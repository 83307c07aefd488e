"""Serving a console over a running ``TestPlatform`` for the console's tests, and saving the
pages' screenshots.

``served_console(platform, token=...)`` starts the console for the platform's streams, file
store and tables on a free port in a thread, waits until its history has replayed the
metrics stream, and yields a ``Served`` (its ``url``, the ``app``, the ``token``).
``screenshot(page, name)`` saves the page under ``.cache/screenshots/console/<name>.png``
(kept after the run: CI's artifacts and the reviewers look at them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette

import millstream
from millstream.console import ServedConsole, create_app
from millstream.testing import TestPlatform

__all__ = ["SCREENSHOTS", "TOKEN", "Served", "screenshot", "served_console", "sign_in"]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".cache" / "screenshots" / "console"
#: the token the tests start a console with
TOKEN = "console-test-token"


@dataclass(frozen=True)
class Served:
    url: str
    app: Starlette
    token: str | None


@contextmanager
def served_console(platform: TestPlatform, *, token: str | None = TOKEN,
                   keep: float = 3600.0) -> Iterator[Served]:
    """The console over ``platform`` (its streams, files and tables), on a free port."""
    streams = millstream.open_streams(platform.url)  # its own handle, as a console process has
    app = create_app(streams, token=token, keep=keep, streams_url=platform.url,
                     open_files=lambda: platform.files, open_tables=lambda: platform.tables)
    ctx = app.state.console
    try:
        if not ctx.history.replayed.wait(10):
            raise AssertionError("the console's history did not replay the metrics stream "
                                 "within 10 s")
        with ServedConsole(app) as server:
            yield Served(server.url, app, token)
    finally:
        ctx.history.stop()
        streams.close()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save ``page`` as ``.cache/screenshots/console/<name>.png``; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Any, served: Served, *, next_path: str = "/") -> None:
    """Sign ``page`` in with the console's token through the sign-in form."""
    assert served.token is not None, "this console was started read-only"
    page.goto(f"{served.url}/signin?next={quote(next_path, safe='/')}")
    page.fill("input[name=token]", served.token)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_url(f"{served.url}{next_path}")
