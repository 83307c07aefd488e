"""A stream's settings in words for people, as the command line and the console show them."""

from __future__ import annotations

from rich.filesize import decimal

from millstream.streams._info import Retention, to_ms

__all__ = ["format_ms", "format_retention"]

_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))


def format_ms(ms: int) -> str:
    """A duration in the largest unit that divides it exactly: ``7d``, ``90min``, ``1500 ms``."""
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"


def format_retention(r: Retention) -> str:
    """A retention for people: ``forever``, ``7d``, ``1.0 GB/partition, compacted``."""
    parts = []
    if r.max_age is not None:
        parts.append(format_ms(to_ms(r.max_age)))
    if r.max_bytes is not None:
        parts.append(f"{decimal(r.max_bytes)}/partition")
    if r.compact:
        parts.append("compacted")
    return ", ".join(parts) or "forever"
