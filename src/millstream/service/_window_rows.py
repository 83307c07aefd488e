"""What a windowed service writes: ``WindowRow`` (a row of its window table and a result on
its output stream) and ``LateRecord`` (the reason on a late record's exception record).

A row holds the record key, the window's ``start`` and ``end`` (event time, integer
milliseconds; record counts for ``Counted``), the aggregate's ``value``, how many
``records`` it holds, and whether it is ``closed``. Its table key is ``<key>/<start, 15
digits>`` (``window_id``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["LateRecord", "WindowRow", "window_id"]


class WindowRow(BaseModel):
    """One key's window: a row of the window table, and a result on the output stream."""

    key: str
    start: int
    end: int
    value: Any = None
    records: int = 0
    closed: bool = False


def window_id(key: str, start: int) -> str:
    """The table key of ``key``'s window starting at ``start``."""
    return f"{key}/{start:015d}"


class LateRecord(Exception):
    """A record whose every window had closed when it came: it is on the exceptions stream
    (stage ``late``), counted in no window. ``windows``: the ``(start, end)`` it missed."""

    #: the exception record's stage
    stage = "late"

    def __init__(self, key: str, t: int, windows: list[tuple[int, int]], watermark: int,
                 grace: int) -> None:
        spans = ", ".join(f"[{s}, {e})" for s, e in windows)
        super().__init__(
            f"late record: key {key!r} at event time {t} ms missed window(s) {spans} "
            f"(ms), closed at watermark {watermark} ms with grace {grace} ms")
        self.key = key
        self.time_ms = t
        self.windows = windows
        self.watermark = watermark


# exception records name an error by its class's module: give the public one
LateRecord.__module__ = "millstream.service"
