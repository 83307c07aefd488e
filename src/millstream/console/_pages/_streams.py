"""The console's Streams page (issue 15): being built; see docs/internals/console-design.md."""

from __future__ import annotations

from starlette.routing import BaseRoute

__all__ = ["routes"]

routes: list[BaseRoute] = []
