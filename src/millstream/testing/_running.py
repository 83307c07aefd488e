"""Service instances running in background threads, as a test sees them.

A ``RunningService`` is what ``TestPlatform.start`` returns: the instances of one service,
run by ``millstream.runtime.ServiceThreads`` (each a ``ServiceRunner`` in its own thread with
its own streams handle, so its own consumer in the service's real group). A thread that dies
keeps its exception; the platform's wait helpers report it at once as an ``AssertionError``,
and ``stop()`` raises it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from millstream.runtime._metrics import Statistics
from millstream.runtime._runner import ServiceRunner
from millstream.runtime._threads import ServiceThreads
from millstream.streams._base import GroupInfo

__all__ = ["RunningService"]

log = logging.getLogger(__name__)


class RunningService:
    """Instances of one service running in background threads; stop them with ``stop()``
    or by leaving its ``with`` block."""

    def __init__(self, threads: ServiceThreads, group: str,
                 describe_group: Callable[[str], GroupInfo]) -> None:
        (self.service,) = threads.services
        self.group = group
        self._threads = threads
        self._inputs = threads.app.get(self.service).inputs
        self._describe_group = describe_group
        self._reported = False

    @property
    def runners(self) -> list[ServiceRunner]:
        """The instances' runners."""
        return self._threads.runners

    @property
    def errors(self) -> list[BaseException]:
        """What ended each instance's thread that died, in order."""
        return [failure.error for failure in self._threads.errors]

    @property
    def alive(self) -> bool:
        """True while any instance's thread runs."""
        return self._threads.alive

    def statistics(self) -> Statistics:
        """The instances' statistics added up (processing times from their merged
        histograms)."""
        return self._threads.statistics(self.service)

    def wait_assigned(self, timeout: float = 5.0) -> GroupInfo:
        """Wait until every instance is a member of the group, every input partition has a
        live owner and each member owns some (when there are enough partitions); return the
        group as it was then."""
        deadline = time.monotonic() + timeout
        wanted = len(self.runners)
        while True:
            self.check()
            info = self._describe_group(self.group)
            inputs = [p for p in info.partitions if p.stream in self._inputs]
            owning = [m for m in info.members
                      if any(sp.stream in self._inputs for sp in m.partitions)]
            enough = min(wanted, len(inputs)) if inputs else wanted
            if (len(info.members) == wanted and inputs
                    and all(p.owner is not None for p in inputs) and len(owning) >= enough):
                return info
            if time.monotonic() >= deadline:
                owners = ", ".join(f"{p.stream}[{p.partition}]→{p.owner}" for p in inputs)
                raise AssertionError(
                    f"service {self.service!r}: {wanted} instance(s) were not all assigned "
                    f"partitions of group {self.group!r} within {timeout} s; members: "
                    f"{[m.member_id for m in info.members]}, owners: {owners or '(none)'}"
                )
            time.sleep(0.01)

    def check(self) -> None:
        """Raise ``AssertionError`` (caused by the crash) if an instance's thread died and
        ``stop()`` has not reported it yet."""
        if self.errors and not self._reported:
            first = self.errors[0]
            raise AssertionError(
                f"service {self.service!r} crashed: {type(first).__name__}: {first}"
            ) from first

    def stop(self, timeout: float = 10.0) -> Statistics:
        """Stop every instance (each finishes its record in hand, commits, checkpoints and
        leaves the group) and return the added-up statistics. Idempotent; the first call
        re-raises an instance's crash."""
        stuck = self._threads.stop(timeout)
        if stuck:
            raise AssertionError(
                f"service {self.service!r}: {', '.join(stuck)} did not stop within {timeout} s "
                "(a handler that blocks?)"
            )
        if self.errors and not self._reported:
            self._reported = True
            self._threads.raise_error()
        return self.statistics()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.stop()
            return
        try:  # the block's own failure matters more than a crash found while stopping
            self.stop()
        except BaseException as stop_exc:
            log.warning("stopping %s after a failure: %s", self.service, stop_exc)

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"RunningService({self.service!r}, instances={len(self.runners)}, {state})"

