"""Supervising service processes: start them, restart the ones that die, stop them cleanly.

Each child runs ``python -m millstream run module:app SERVICE`` in a session of its own, so a
Ctrl-C in the terminal reaches the supervisor only; the supervisor then sends SIGTERM to every
child (each finishes its record in hand, commits and exits) and SIGKILLs those still running
after the grace period.

A child that exits while the supervisor is running is restarted after a back-off that starts
at ``backoff_s`` and doubles on each quick death (one within ``stable_s`` of its start), up to
``max_backoff_s``; a child that ran for ``stable_s`` starts again from ``backoff_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Child", "Supervisor", "run_command"]

log = logging.getLogger(__name__)


def run_command(target: str, service: str, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one service process."""
    return [sys.executable, "-m", "millstream", "run", target, service, *extra]


@dataclass
class Child:
    """One supervised process."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    """Runs children until ``stop()``; see the module docstring."""

    def __init__(
        self,
        children: Sequence[tuple[str, list[str]]],
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 30.0,
        grace_s: float = 20.0,
        env: dict[str, str] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.children = [Child(name, list(command), backoff=backoff_s)
                         for name, command in children]
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._stable = stable_s
        self._grace = grace_s
        self._env = env
        self._stopping = False
        self._say = on_event or (lambda message: log.info("%s", message))

    def stop(self) -> None:
        self._stopping = True

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self._env, start_new_session=True)
        child.started = time.monotonic()
        child.restart_at = None
        self._say(f"started {child.name} (pid {child.process.pid})")

    def _check(self, child: Child, now: float) -> None:
        if child.process is None:
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        code = child.process.poll()
        if code is None:
            return
        child.exits.append(code)
        lived = now - child.started
        child.process = None
        if lived >= self._stable:
            child.backoff = self._backoff
        delay = child.backoff
        child.backoff = min(child.backoff * 2, self._max_backoff)
        child.restart_at = now + delay
        how = f"signal {-code}" if code < 0 else f"code {code}"
        self._say(f"{child.name} exited with {how} after {lived:.1f} s; restarting in "
                  f"{delay:.1f} s")

    def run(self, poll_s: float = 0.1) -> int:
        """Supervise until ``stop()``; then stop every child. Returns 0, or 1 if a child had
        to be killed."""
        for child in self.children:
            self._start(child)
        try:
            while not self._stopping:
                now = time.monotonic()
                for child in self.children:
                    self._check(child, now)
                time.sleep(poll_s)
        finally:
            killed = self._stop_all()
        return 1 if killed else 0

    def _stop_all(self) -> bool:
        running = [c for c in self.children if c.process is not None]
        for child in running:
            assert child.process is not None
            try:
                child.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._say(f"stopping {len(running)} process(es): each finishes its record in hand, "
                  "commits and exits")
        deadline = time.monotonic() + self._grace
        killed = False
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                self._say(f"{child.name} (pid {child.process.pid}) did not stop within "
                          f"{self._grace:.0f} s; killing it")
                try:
                    os.killpg(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.process.wait()
                killed = True
            if child.process.returncode is not None:
                child.exits.append(child.process.returncode)
            child.process = None
        return killed
