"""Headless Chromium for the browser tests (the console's and the video site's): the
system's ``/usr/bin/chromium`` driven by Playwright, no browser download. Without Chromium
or the playwright wheel a test skips, unless ``MILLSTREAM_REQUIRE_SERVICES=1`` (then it
fails)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.platform_fixtures import _no_service

__all__ = ["ARGS", "CHROMIUM", "chromium"]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium, closed at the end of the block."""
    if not CHROMIUM.exists():
        _no_service(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_service("the playwright wheel is not installed (pip install playwright)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
