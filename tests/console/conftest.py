"""The console's tests drive headless Chromium (``/usr/bin/chromium``) with Playwright; no
browser is downloaded. Without Chromium or the playwright wheel they skip, unless
``MILLSTREAM_REQUIRE_SERVICES=1`` (then they fail). ``page`` fails its test on any console
error of the page (a CSP violation, a script error, a failed load)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one for the test module."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page, 1280×800; console errors fail the test (but for the 4xx status of an
    error page the test navigated to)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: Any) -> None:
        # an error page (404, 400) is what some tests ask for: its own status is not an error
        document = message.location.get("url", "") == page.url
        if message.type == "error" and not (document and message.text.startswith(
                "Failed to load resource: the server responded with a status of 4")):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert errors == [], f"console errors on the page: {errors}"
