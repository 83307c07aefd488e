"""Views per video over hopping windows: what the window rows hold and how the site reads them.

The ``views-hourly`` service (``videosite.app``) counts, per video, the ``start`` events of
stream ``titled-views`` over hopping windows an hour long that start every five minutes
(``WINDOW_S``, ``HOP_S``), by the time the site accepted each event. Its table holds one row
per video and window (``WindowRow``: ``{"key", "start", "end", "value", "records",
"closed"}``, times in ms, key ``"<video id>/<start, 15 digits>"``); the value is
``{"views": n, "title": t}`` (``no_views``, ``add_view``). ``current_rows`` and
``window_rows`` read them from the table, ``ranked`` and ``per_hour`` make them pages.

Two readings of the same rows:

* **trending** — the window *now* that began longest ago (``current_window``): it holds
  every view of the last ``WINDOW_S - HOP_S`` seconds and at most ``WINDOW_S``; its videos
  by views, most first.
* **views per hour** — the windows that start on the hour are the clock hours, one
  after the other, without overlap (``per_hour``); an hour without a view has no row, 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from millstream import NotFoundError
from millstream.tables import Tables

from .models import TitledView

__all__ = ["HOP_S", "TABLE", "WINDOW_S", "HourCount", "Trending", "add_view",
           "current_rows", "current_window", "no_views", "per_hour", "ranked", "window_rows"]

#: the windows: an hour long, one starting every five minutes
WINDOW_S = 3600
HOP_S = 300
#: the window table (and its service)
TABLE = "views-hourly"
_HOUR_MS = 3_600_000


def no_views() -> dict[str, Any]:
    """A window's value before its first event."""
    return {"views": 0, "title": None}


def add_view(value: dict[str, Any], view: TitledView) -> dict[str, Any]:
    """A window's value with ``view`` in it: a ``start`` is one view more; the title is the
    latest the catalog gave (kept when a view came without one)."""
    return {"views": int(value["views"]) + (view.event == "start"),
            "title": view.title if view.title is not None else value["title"]}


def current_window(now_s: float) -> tuple[int, int]:
    """``(start, end)`` in ms of the window that holds ``now_s`` and began longest ago."""
    hop, size = HOP_S * 1000, WINDOW_S * 1000
    now = int(now_s * 1000)
    start = ((now - size) // hop + 1) * hop
    return start, start + size


@dataclass(frozen=True, slots=True)
class Trending:
    """A video's views in the current window; ``title`` as the window row has it (None if the
    catalog had none when its views came)."""

    video_id: str
    views: int
    title: str | None


@dataclass(frozen=True, slots=True)
class HourCount:
    """The views of one clock hour, ``[start, start + 1 h)``, ``start`` in ms (UTC)."""

    start: int
    views: int


def current_rows(tables: Tables, now_s: float) -> list[dict[str, Any]]:
    """The rows of the window current at ``now_s`` (``current_window``), every video's:
    a query on the rows' ``start`` (none before the views service made its table)."""
    start, _ = current_window(now_s)
    try:
        return [doc for _, doc in tables.table(TABLE).query({"start": start})]
    except NotFoundError:
        return []


def window_rows(tables: Tables, prefix: str = "") -> list[dict[str, Any]]:
    """The rows of the window table whose key starts with ``prefix`` (a video's:
    ``"<video id>/"``); none before the views service made its table."""
    try:
        table = tables.table(TABLE)
        found: list[dict[str, Any]] = []
        after: str | None = None
        while page := table.scan(prefix, after=after, limit=1000):
            found.extend(doc for _, doc in page)
            after = page[-1][0]
        return found
    except NotFoundError:
        return []


def ranked(rows: Iterable[Mapping[str, Any]], now_s: float, limit: int = 8
           ) -> list[Trending]:
    """The ``limit`` videos with the most views in the current window, most first (then by
    title and id); videos without a view in it are not listed."""
    start, _ = current_window(now_s)
    found = [Trending(str(row["key"]), int(row["value"]["views"]), row["value"]["title"])
             for row in rows if row["start"] == start and row["value"]["views"] > 0]
    found.sort(key=lambda t: (-t.views, t.title or "", t.video_id))
    return found[:limit]


def per_hour(rows: Iterable[Mapping[str, Any]], now_s: float, hours: int = 24
             ) -> list[HourCount]:
    """The views of each of the last ``hours`` clock hours, oldest first, the current hour
    last (so far); ``rows`` are one video's."""
    this_hour = int(now_s * 1000) // _HOUR_MS * _HOUR_MS
    first = this_hour - (hours - 1) * _HOUR_MS
    counts = {int(row["start"]): int(row["value"]["views"]) for row in rows
              if row["start"] % _HOUR_MS == 0 and first <= row["start"] <= this_hour}
    return [HourCount(h, counts.get(h, 0))
            for h in range(first, this_hour + _HOUR_MS, _HOUR_MS)]
