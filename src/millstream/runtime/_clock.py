"""The service runtime's sense of time, replaceable in tests.

The runner asks a ``Clock`` when commits, checkpoints and metrics are due, what time to stamp
on metrics, and how long to wait between retries. ``SystemClock`` is the real one;
``millstream.testing`` offers a manual clock that only moves when a test advances it.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (for timestamps)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (retry back-off)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
