"""The millstream console: a web UI for a running system (``millstream console``).

``create_app`` makes the console's ASGI app for a streams backend (and, opened at first use,
the file store and the tables); it starts reading the metrics history at once.
``STATIC`` and ``TEMPLATES`` are its static files and templates (the video site's ops page
serves and imports them: the badge macro, the stylesheet). ``ServedConsole`` serves an app
on a thread (the video site's demo does), ``build_server`` in the foreground (the CLI does).
Pages: Overview, Service, Streams, Groups, Exceptions, Tables, Shadows — see
docs/guides/console.md.
"""

from __future__ import annotations

from millstream.console._app import STATIC, build_app, create_app
from millstream.console._context import ConsoleContext
from millstream.console._history import DEFAULT_KEEP, MetricsHistory
from millstream.console._render import TEMPLATES
from millstream.console._server import ServedConsole, build_server

__all__ = ["DEFAULT_KEEP", "STATIC", "TEMPLATES", "ConsoleContext", "MetricsHistory",
           "ServedConsole", "build_app", "build_server", "create_app"]
