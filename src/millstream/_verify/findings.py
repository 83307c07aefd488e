"""What a verify check reports: an anomaly's exact count and its first few examples in words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EXAMPLES", "Finding", "Position", "at", "finding"]

#: How many examples a finding keeps.
EXAMPLES = 3

#: A record's place: (partition, offset).
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Finding:
    """How often one anomaly occurred, and the first few occurrences in words."""

    count: int = 0
    examples: tuple[str, ...] = ()


def finding(items: Iterable[str]) -> Finding:
    listed = list(items)
    return Finding(len(listed), tuple(listed[:EXAMPLES]))


def at(position: Position) -> str:
    """``partition@offset``."""
    return f"{position[0]}@{position[1]}"
