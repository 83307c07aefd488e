"""A clock that moves only when a test moves it: ``ManualClock``.

It implements ``millstream.runtime._clock.Clock``. Wall time starts at a fixed epoch (so
timestamps in metrics and exception records are predictable), monotonic time starts at 0,
and both move together on ``advance``. ``sleep`` advances the clock at once instead of
waiting, so a retry policy with minutes of back-off runs in no real time.
"""

from __future__ import annotations

import math
import threading

from millstream.errors import InvalidRequestError

__all__ = ["DEFAULT_EPOCH", "ManualClock"]

#: Where a ``ManualClock`` starts unless told otherwise: 2023-11-14 22:13:20 UTC.
DEFAULT_EPOCH = 1_700_000_000.0


class ManualClock:
    """A ``Clock`` for tests: it stands still until ``advance`` or ``sleep`` moves it.

    Safe to share between threads: every service instance of a ``TestPlatform`` reads the
    same clock, and a retry's ``sleep`` in one of them moves time for all.
    """

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        _check_seconds(start, "start")
        self._lock = threading.Lock()
        self._time = float(start)
        self._elapsed = 0.0
        self._slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def time(self) -> float:
        with self._lock:
            return self._time

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` at once (what a retry back-off waits)."""
        _check_seconds(seconds, "sleep")
        with self._lock:
            self._move(seconds)
            self._slept += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (≥ 0); services see it on their next loop turn."""
        _check_seconds(seconds, "advance")
        with self._lock:
            self._move(seconds)

    @property
    def elapsed(self) -> float:
        """Seconds the clock moved since it was made (advances and sleeps)."""
        return self.monotonic()

    @property
    def slept(self) -> float:
        """Seconds of that spent in ``sleep`` (retry back-off)."""
        with self._lock:
            return self._slept

    def _move(self, seconds: float) -> None:
        self._time += seconds
        self._elapsed += seconds

    def __repr__(self) -> str:
        with self._lock:
            return f"ManualClock(time={self._time!r}, elapsed={self._elapsed!r})"


def _check_seconds(seconds: float, what: str) -> None:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequestError(
            f"ManualClock {what}={seconds!r} must be a finite number ≥ 0 (time never goes back)"
        )
