"""Wrong tokens, counted per address: after ``tries`` within ``window_s`` seconds, sign-in
from that address is refused (429) until the oldest of them is ``window_s`` old — the right
token included, so guessing gets no answer at all."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from millstream.console._limits import SIGNIN_TRIES, SIGNIN_WINDOW_S

__all__ = ["SignInGuard"]


class SignInGuard:
    """``wait(address)``: seconds before ``address`` may try again (0: now);
    ``failed(address)``: it sent a wrong token."""

    def __init__(self, tries: int = SIGNIN_TRIES, window_s: float = SIGNIN_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tries, self.window_s = tries, window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, address: str) -> float:
        with self._lock:
            recent = self._recent(address)
            if len(recent) < self.tries:
                return 0.0
            return recent[0] + self.window_s - self._clock()

    def failed(self, address: str) -> None:
        with self._lock:
            # addresses whose failures are all older than the window are forgotten
            for other in list(self._failures):
                if not self._recent(other):
                    del self._failures[other]
            self._recent(address).append(self._clock())

    def _recent(self, address: str) -> deque[float]:
        recent = self._failures.setdefault(address, deque())
        cutoff = self._clock() - self.window_s
        while recent and recent[0] <= cutoff:
            recent.popleft()
        return recent
