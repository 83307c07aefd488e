"""Per-client throttling: a token bucket per client, in a bounded map (``Throttle``).

A client may send ``burst`` requests at once and then ``rate`` per second on average; a
request over that is refused with the seconds until the next one would be accepted. The map
keeps the ``max_clients`` most recently seen clients: a client forgotten to make room starts
again with a full bucket, which is what an idle client has anyway (a bucket refills to full
after ``burst / rate`` seconds). Time comes from an injectable clock (seconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Throttle", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request is accepted and, when not, the whole seconds to wait (≥ 1)."""

    accepted: bool
    retry_after_s: int = 0


class Throttle:
    """Token buckets of ``burst`` tokens refilled at ``rate`` per second, one per client."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"a throttle's rate must be a number of requests per second "
                             f"above 0, not {rate!r}")
        if burst < 1:
            raise ValueError(f"a throttle's burst must be at least 1 request, not {burst!r}")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        #: client -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> Verdict:
        """Take one token of ``client``'s bucket if it has one."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            # a clock set back gives nothing, and takes nothing either
            tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate)
            if tokens >= 1.0:
                self._remember(client, tokens - 1.0, now)
                return Verdict(True)
            self._remember(client, tokens, now)
            return Verdict(False, max(1, math.ceil((1.0 - tokens) / self.rate)))

    def _remember(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def describe(self) -> str:
        """The limit in words, for refusals: '20 at once, then 1 per second'."""
        return f"{self.burst} at once, then {self.rate:g} per second"

    def __len__(self) -> int:
        return len(self._buckets)
