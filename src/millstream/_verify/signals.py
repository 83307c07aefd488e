"""How a verify run is stopped from outside: SIGINT, SIGTERM and SIGHUP alike.

The first of them raises ``KeyboardInterrupt`` in the runner (Ctrl-C, ``timeout 60 millstream
verify``, a closed terminal and a CI cancel all end the run the same way); later ones are noted
and ignored, so a second Ctrl-C cannot cut the clean-up short. The clean-up itself runs with
the three signals blocked in the runner's thread (``StopSignals.cleaning_up``); one that
reaches another thread meanwhile is held back by the handler, and the first of them is raised
once the clean-up is done.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopSignals"]

log = logging.getLogger(__name__)

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopSignals:
    """While entered (in the main thread), the first stop signal raises ``KeyboardInterrupt``
    and later ones are only recorded in ``received`` — also after the ``with`` if one was
    raised (the caller is then ending); otherwise the previous handlers come back."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, _Handler] = {}
        self._raised = False
        self._holding = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self._raised and not self._holding:
            self._raised = True
            raise KeyboardInterrupt(signal.Signals(signum).name)
        log.warning("%s received while stopping; the clean-up goes on",
                    signal.Signals(signum).name)

    @contextmanager
    def cleaning_up(self) -> Iterator[None]:
        """Run the ``with`` body with the stop signals blocked (and held back if they reach
        another thread); if one came and none was raised before, raise it after the body."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._holding = True
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a pending one runs here
            self._holding = False
        if self.received and not self._raised:
            self._raised = True
            raise KeyboardInterrupt(signal.Signals(self.received[0]).name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._raised:
            return  # interrupted: the process is on its way out; later signals stay ignored
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
