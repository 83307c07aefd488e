"""The failures of a Kafka producer's records, each reported once to every thread's flush.

Delivery callbacks append failures (handles' and written records' alike) to ``items``; a
thread's ``flush()`` raises for those no flush of that thread reported yet. Every thread is
told of every failure once: a written record has no handle, so the thread that wrote it must
hear of it even when another thread's flush came first. Beyond ``KEEP`` failures the oldest
are trimmed; a thread behind them is still told how many failed.
"""

from __future__ import annotations

import threading
from typing import Any

from millstream.errors import DeliveryError, MillstreamError
from millstream.streams._kafka.errors import error_of

__all__ = ["Failures"]

KEEP = 10_000  # failures kept for threads not yet told of them


class Failures:
    """A producer's failed records; ``serving`` is the lock its callbacks run under."""

    def __init__(self, serving: threading.Lock) -> None:
        self.items: list[MillstreamError] = []  # appended by callbacks only
        self._dropped = 0  # failures trimmed off the front of items
        self._told = threading.local()  # per thread: how many failures its flushes reported
        self._serving = serving

    def written(self, err: Any, msg: Any) -> None:
        """The delivery callback of every written record: only failures are kept."""
        if err is not None:
            self.items.append(error_of(err, f"producing to {msg.topic()!r}"))

    def untold(self) -> tuple[int, MillstreamError | None]:
        """The failures no flush of this thread has reported yet, and the first of them (the
        oldest kept, if it was trimmed), now marked reported."""
        items = self.items
        total = self._dropped + len(items)  # callbacks only append
        seen = getattr(self._told, "n", 0)
        if total <= seen:
            return 0, None
        self._told.n = total
        index = seen - self._dropped
        first = items[index] if index >= 0 else items[0]
        if len(items) > KEEP:
            with self._serving:  # no callback appends meanwhile
                cut = len(items) - KEEP // 2
                del items[:cut]
                self._dropped += cut
        return total - seen, first

    def raise_untold(self) -> None:
        """Raise ``DeliveryError`` for the failures this thread was not told of yet."""
        failed, first = self.untold()
        if first is not None:
            raise DeliveryError(
                f"{failed} records could not be stored (a sent record's handle says which; "
                f"written records have none); first: {first}", undelivered=failed,
            ) from first
