"""The console's pages, one module each; ``routes()`` gathers them for the app."""

from __future__ import annotations

from starlette.routing import BaseRoute

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    """Every page's routes, in the order of the navigation bar."""
    from millstream.console._pages import (
        _exceptions,
        _groups,
        _overview,
        _service,
        _shadows,
        _streams,
        _tables,
    )

    return [route for module in (_overview, _service, _streams, _groups, _exceptions, _tables,
                                 _shadows) for route in module.routes]
