"""Reading the CLI's tables back: one list of cells per row."""

from __future__ import annotations

import re

_GAP = re.compile(r"\s{2,}")


def rows(text: str) -> list[list[str]]:
    """The cells of each table row in ``text`` (cells are separated by 2+ spaces; rules and
    blank lines are dropped)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or set(stripped) <= {"─", " "}:
            continue
        out.append(_GAP.split(stripped))
    return out


def row(text: str, first: str) -> list[str]:
    """The one row whose first cell is ``first``."""
    found = [r for r in rows(text) if r[0] == first]
    assert len(found) == 1, f"expected one row starting {first!r} in:\n{text}"
    return found[0]
