"""Running an app's services in threads of one process: start them, stop them, report what
killed one.

``ServiceThreads`` is what the test kit (``TestPlatform.start``), the video site's
single-process mode and the benchmarks run services with; ``millstream run`` and ``millstream
up`` run each instance in a process of its own instead. Each instance is a
``ServiceRunner`` in a thread of its own, with a streams handle of its own (so a consumer of
its own in the service's real group), which its thread closes when the runner returns.

An instance whose ``run`` raises ends; the others keep running. Its exception is kept in
``errors`` (a ``ServiceError`` naming the service and the instance) and logged;
``raise_error()`` raises the first one not raised yet, so a caller polling for output hears
of a crash at once instead of waiting out its timeout. Leaving a ``with`` block raises it too
(unless the block itself failed): a crash is never silently dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

from millstream.errors import InvalidRequestError, OperationTimeoutError
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics import Statistics
from millstream.runtime._runner import ServiceRunner
from millstream.runtime._streams import ensure_app_streams
from millstream.service._app import App
from millstream.streams._base import Streams

__all__ = ["ServiceError", "ServiceThreads", "combine_statistics"]

log = logging.getLogger(__name__)


class ServiceError(NamedTuple):
    """What ended one instance's thread: the exception its ``ServiceRunner.run`` raised."""

    service: str
    instance: int
    error: BaseException

    def __str__(self) -> str:
        return f"{self.service}#{self.instance}: {type(self.error).__name__}: {self.error}"


class ServiceThreads:
    """Instances of ``app``'s ``services`` (default: all), each a ``ServiceRunner`` in a
    thread of its own; see the module docstring.

    ``connect`` opens a streams handle (called once per instance). ``instances``: how many
    instances of each service (one number for all, or by service name; default 1), the
    instances of a service sharing its group. ``shadow`` runs them as that shadow version.
    Other keyword arguments go to every ``ServiceRunner`` (``files``, ``tables``, ``clock``,
    ``metrics_interval_s``, ``poll_timeout_s``, …).

    The runners are made here; ``start()`` (or entering the ``with`` block) creates the
    streams they read and write (``ensure_app_streams``) and starts their threads; ``stop()``
    (or leaving the block) asks each to finish its record in hand, commit and return. A
    ``ServiceThreads`` starts once."""

    def __init__(self, app: App, connect: Callable[[], Streams],
                 services: Iterable[str] | None = None, *,
                 instances: int | Mapping[str, int] = 1, shadow: str | None = None,
                 **runner_options: Any) -> None:
        self.app = app
        self.shadow = shadow
        self.services = list(app.services) if services is None else list(services)
        counts = {name: instances if isinstance(instances, int) else instances.get(name, 1)
                  for name in self.services}
        for name, count in counts.items():
            app.get(name)  # an unknown service is refused before anything is opened
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise InvalidRequestError(f"instances of {name!r}={count!r}: give an integer ≥ 1")
        #: the runners, one per instance, in the order of ``services``
        self.runners: list[ServiceRunner] = []
        #: what ended an instance's thread, in the order they ended
        self.errors: list[ServiceError] = []
        self._raised = 0
        self._connect = connect
        self._handles: list[Streams] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        try:
            for name in self.services:
                for instance in range(counts[name]):
                    streams = connect()
                    self._handles.append(streams)
                    self.runners.append(ServiceRunner(app, name, streams, shadow=shadow,
                                                      instance=instance, **runner_options))
        except BaseException:
            self._close_handles()
            raise

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServiceThreads:
        """Create the services' streams, then start every instance's thread; return self.
        When this returns, the streams exist; partitions may still be being assigned."""
        if self._started:
            raise InvalidRequestError("a ServiceThreads starts once; make a new one")
        self._started = True
        try:
            with self._connect() as streams:
                ensure_app_streams(self.app, streams, services=self.services,
                                   shadow=self.shadow)
        except BaseException:
            self._close_handles()
            raise
        for runner, streams in zip(self.runners, self._handles, strict=True):
            thread = threading.Thread(
                target=self._run, args=(runner, streams), daemon=True,
                name=f"millstream-{runner.spec.name}-{runner.instance}")
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, runner: ServiceRunner, streams: Streams) -> None:
        try:
            runner.run()
        except BaseException as exc:  # kept for raise_error(); the others keep running
            failure = ServiceError(runner.spec.name, runner.instance, exc)
            log.warning("service instance %s ended: %s", f"{failure.service}#{failure.instance}",
                        f"{type(exc).__name__}: {exc}")
            self.errors.append(failure)
        finally:
            streams.close()

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Ask every instance to finish its record in hand, commit and return, and wait up to
        ``timeout`` seconds in all for their threads; the names of those still running then
        (empty when every one stopped). Idempotent; raises nothing — see ``raise_error``."""
        for runner in self.runners:
            runner.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if not self._threads:  # never started: nothing else closes the handles
            self._started = True  # and they are closed: it cannot start any more
            self._close_handles()
        return [t.name for t in self._threads if t.is_alive()]

    def _close_handles(self) -> None:
        for streams in self._handles:
            streams.close()

    def __enter__(self) -> ServiceThreads:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop every instance; unless the block itself failed, raise what killed one (not
        raised yet), or ``OperationTimeoutError`` for threads still running after 10 s."""
        stuck = self.stop()
        if exc_type is not None:
            return
        self.raise_error()
        if stuck:
            raise OperationTimeoutError(
                f"{', '.join(stuck)} still running 10 s after being asked to stop (a handler "
                "that blocks?); they are daemon threads and end with the process")

    # -- watching -------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True while any instance's thread runs."""
        return any(t.is_alive() for t in self._threads)

    def raise_error(self) -> None:
        """Raise the exception of the first instance that died and was not raised yet (the
        exception itself, as ``run`` raised it); nothing if none did."""
        if self._raised < len(self.errors):
            failure = self.errors[self._raised]
            self._raised = len(self.errors)
            raise failure.error

    def statistics(self, service: str) -> Statistics:
        """The statistics of ``service``'s instances, added up."""
        if service not in self.services:
            raise InvalidRequestError(f"service {service!r} is not running here; running: "
                           f"{', '.join(self.services)}")
        return combine_statistics(r for r in self.runners if r.spec.name == service)

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return (f"ServiceThreads({self.app.name!r}, {', '.join(self.services)}, "
                f"instances={len(self.runners)}, {state})")


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
