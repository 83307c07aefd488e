"""Service instances running in background threads, and their statistics added up.

A ``RunningService`` is what ``TestPlatform.start`` returns: one ``ServiceRunner`` per
instance, each in its own thread with its own streams handle (so its own consumer in the
service's real group). A thread that dies keeps its exception; the platform's wait helpers
report it at once, and ``stop()`` raises it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics import Statistics
from millstream.runtime._runner import ServiceRunner
from millstream.streams._base import GroupInfo, Streams

__all__ = ["RunningService", "combine_statistics"]

log = logging.getLogger(__name__)


class RunningService:
    """Instances of one service running in background threads; stop them with ``stop()``
    or by leaving its ``with`` block."""

    def __init__(self, service: str, group: str, inputs: Sequence[str],
                 describe_group: Callable[[str], GroupInfo]) -> None:
        self.service = service
        self.group = group
        self.runners: list[ServiceRunner] = []
        self.errors: list[BaseException] = []
        self._inputs = tuple(inputs)
        self._describe_group = describe_group
        self._threads: list[threading.Thread] = []
        self._reported = False

    def _add(self, runner: ServiceRunner, streams: Streams) -> None:
        index = len(self.runners)
        thread = threading.Thread(target=self._run, args=(runner, streams), daemon=True,
                                  name=f"millstream-test-{self.service}-{index}")
        self.runners.append(runner)
        self._threads.append(thread)
        thread.start()

    def _run(self, runner: ServiceRunner, streams: Streams) -> None:
        try:
            runner.run()
        except BaseException as exc:  # kept for stop() and the wait helpers to report
            log.warning("service %s instance crashed: %s: %s", self.service,
                        type(exc).__name__, exc)
            self.errors.append(exc)
        finally:
            streams.close()

    @property
    def alive(self) -> bool:
        """True while any instance's thread runs."""
        return any(t.is_alive() for t in self._threads)

    def statistics(self) -> Statistics:
        """The instances' statistics added up (processing times from their merged
        histograms)."""
        return combine_statistics(self.runners)

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
        for runner in self.runners:
            runner.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise AssertionError(
                f"service {self.service!r}: {', '.join(stuck)} did not stop within {timeout} s "
                "(a handler that blocks?)"
            )
        if self.errors and not self._reported:
            self._reported = True
            raise self.errors[0]
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


def combine_statistics(runners: Iterable[ServiceRunner]) -> Statistics:
    """Several runners' statistics as one: counters and lag summed, histograms merged."""
    parts: list[Statistics] = []
    whole = Histogram()
    for runner in runners:
        parts.append(runner.statistics())
        for source in (runner.metrics.total_histogram, runner.metrics.histogram):
            _merge(whole, source)
    lag: dict[str, int] = {}
    for part in parts:
        for name, n in part.lag.items():
            lag[name] = lag.get(name, 0) + n
    return Statistics(
        records_in=sum(p.records_in for p in parts),
        records_out=sum(p.records_out for p in parts),
        errors=sum(p.errors for p in parts),
        retries=sum(p.retries for p in parts),
        exceptions=sum(p.exceptions for p in parts),
        processing=whole.summary(),
        lag=lag,
        assigned=tuple(sorted(a for p in parts for a in p.assigned)),
        uptime_s=max((p.uptime_s for p in parts), default=0.0),
        document={"instances": [p.document for p in parts]},
    )


def _merge(into: Histogram, source: Histogram) -> None:
    # the runner's thread may be recording into ``source``: copy its buckets in one step
    buckets = dict(source.buckets)
    for index, n in buckets.items():
        into.buckets[index] = into.buckets.get(index, 0) + n
    into.count += sum(buckets.values())
    into.total += source.total
    into.max = max(into.max, source.max)
