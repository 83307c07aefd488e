"""``TestPlatform``: a throwaway platform on which a test runs an app's services in-process.

Entering it creates a temporary directory holding an embedded log (short group timeouts, so
rebalances are quick; process durability, so writes are cheap) and the app's streams; leaving
it stops every service still running and deletes the directory. Services run with the
platform's clock — a ``ManualClock`` unless another is given — in the same consumer groups,
with the same retries, commits and checkpoints as in production.

With a manual clock, what the runtime does on a timer happens only when the test advances
the clock: periodic commits, checkpoints and metrics records. Whatever is due also happens
when a service stops, so ``lag``, ``state`` and ``metrics`` are exact after ``stop()`` or
``run_until_idle``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote

from millstream._wellknown import (
    EXCEPTIONS,
    METRICS,
    retry_stream,
)
from millstream.errors import InvalidRequestError, UnknownStreamError
from millstream.files import FileStore, open_files
from millstream.records import Position, Record
from millstream.runtime._clock import Clock
from millstream.runtime._failures import ExceptionRecord, parse_exception
from millstream.runtime._metrics import Statistics
from millstream.runtime._metrics_record import MetricsRecord
from millstream.runtime._runner import ServiceRunner
from millstream.runtime._state import CheckpointStore
from millstream.runtime._streams import ensure_app_streams
from millstream.runtime._threads import ServiceThreads, combine_statistics
from millstream.service._app import App, ServiceSpec
from millstream.service._claimed import app_streams
from millstream.service._shadow import shadow_group
from millstream.service._stream import Stream, check_value, stream_name
from millstream.streams import open_streams
from millstream.streams._base import Producer, Streams
from millstream.tables import Tables, open_tables
from millstream.testing._clock import ManualClock
from millstream.testing._given import KeyLike, When, key_bytes, millis, with_partitions
from millstream.testing._reading import StreamReader, decode_record
from millstream.testing._running import RunningService

__all__ = ["TestPlatform"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: a stream's payload type, for the methods that take its handle
P = TypeVar("P")

#: Embedded-log options: a member that stops heartbeating loses its partitions in 1.5 s.
_LOG_OPTIONS = "session_timeout_ms=1500&heartbeat_interval_ms=250&durability=process"
_POLL_TIMEOUT_S = 0.05
_PREVIEW = 10


class TestPlatform:
    """A temporary platform for one app; use it as a context manager.

    ``clock``: the services' clock (default: a fresh ``ManualClock``; pass your own to
    ``advance`` it). ``partitions_override``:
    one partition count for every declared stream, or a mapping of stream name to count.
    ``metrics_interval_s``: how often (on ``clock``) running services write metrics records.
    Services get a file store (``ctx.files``, also ``platform.files``) and tables
    (``ctx.tables``, ``platform.tables``) in the same temporary directory. For an app with a
    claim-check, ``send`` checks large values in and ``records``/``values``/``wait_for`` read
    them back whole, as the services do.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, app: App, *, clock: Clock | None = None,
                 partitions_override: int | Mapping[str, int] | None = None,
                 metrics_interval_s: float = 60.0) -> None:
        self.app = with_partitions(app, partitions_override)
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.metrics_interval_s = metrics_interval_s
        self.directory: Path | None = None
        self.url = ""
        self._streams: Streams | None = None
        self._files: FileStore | None = None
        self._tables: Tables | None = None
        self._producer: Producer | None = None
        self._readers: dict[str, StreamReader] = {}
        self._handles: list[RunningService] = []

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> TestPlatform:
        if self.directory is not None:
            raise InvalidRequestError("a TestPlatform opens once; make a new one")
        self.directory = Path(tempfile.mkdtemp(prefix=f"millstream-test-{self.app.name}-"))
        try:
            self.url = f"local:{quote(str(self.directory))}?{_LOG_OPTIONS}"
            self._files = open_files((self.directory / "files").as_uri())
            # as the services see them: a claim-checked value is sent and read back whole
            self._streams = app_streams(self.app, open_streams(self.url), self._files)
            self._tables = open_tables("sqlite:///" + str(self.directory / "tables.db"))
            ensure_app_streams(self.app, self._streams)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        failures: list[BaseException] = []
        for handle in self._handles:
            try:
                handle.stop()
            except BaseException as stop_exc:  # reported below unless the block failed
                failures.append(stop_exc)
        self._close()
        if failures and exc_type is None:
            raise failures[0]

    def _close(self) -> None:
        try:
            for reader in self._readers.values():
                reader.close()
            if self._producer is not None:
                self._producer.close()
            if self._streams is not None:
                self._streams.close()
            for store in (self._files, self._tables):
                if store is not None:
                    store.close()
        finally:
            self._readers.clear()
            self._producer = self._streams = None
            self._files = self._tables = None
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def files(self) -> FileStore:
        """The platform's file store (what services see as ``ctx.files``)."""
        self.streams  # noqa: B018  (raises unless the platform is open)
        assert self._files is not None
        return self._files

    @property
    def tables(self) -> Tables:
        """The platform's tables (what services see as ``ctx.tables``)."""
        self.streams  # noqa: B018  (raises unless the platform is open)
        assert self._tables is not None
        return self._tables

    @property
    def streams(self) -> Streams:
        """The platform's streams handle (for the test's own thread)."""
        if self._streams is None:
            raise InvalidRequestError("the TestPlatform is not open; use it in a with block")
        return self._streams

    # -- input --------------------------------------------------------------------------------

    @overload
    def send(self, stream: Stream[P], value: P, *, key: KeyLike = None,
             timestamp: When = None, timeout: float = 5.0) -> Position: ...

    @overload
    def send(self, stream: str, value: Any, *, key: KeyLike = None,
             timestamp: When = None, timeout: float = 5.0) -> Position: ...

    def send(self, stream: Stream[Any] | str, value: Any, *, key: KeyLike = None,
             timestamp: When = None, timeout: float = 5.0) -> Position:
        """Encode ``value`` with the stream's declared codec (the stream by handle or name),
        send it, wait until durable. ``timestamp``: the record's timestamp — seconds since
        the epoch or a ``datetime`` (naive = UTC), e.g. ``platform.clock.time()`` for a
        windowed service that reads event time from timestamps; default: now, by the wall
        clock (not the platform's)."""
        stream = stream_name(stream)
        declared = self._stream(stream)
        check_value(declared, value, "TestPlatform.send")
        data, headers = declared.codec.encode(value)
        return self._open_producer().send(stream, data, key=key_bytes(key),
                                          headers=headers,
                                          timestamp=millis(timestamp)).wait(timeout)

    def send_many(self, stream: Stream[Any] | str, values: Iterable[Any], *,
                  key: Callable[[Any], KeyLike] | KeyLike = None,
                  timestamp: Callable[[Any], When] | When = None,
                  timeout: float = 5.0) -> list[Position]:
        """Send several values in order; ``key`` is one key for all or a function of the
        value, and so is ``timestamp`` (as for ``send``). Returns their positions once all
        are durable."""
        stream = stream_name(stream)
        declared = self._stream(stream)
        items = list(values)
        if not items:
            return []
        for item in items:
            check_value(declared, item, "TestPlatform.send_many")
        encoded = [declared.codec.encode(v) for v in items]
        keys = [key_bytes(key(v) if callable(key) else key) for v in items]
        producer = self._open_producer()
        if timestamp is None:
            return producer.send_batch(
                stream, [d for d, _ in encoded], keys=keys, headers=[h for _, h in encoded],
            ).wait(timeout)
        handles = [producer.send(stream, data, key=k, headers=h, timestamp=millis(
            timestamp(v) if callable(timestamp) else timestamp))
            for v, (data, h), k in zip(items, encoded, keys, strict=True)]
        return [handle.wait(timeout) for handle in handles]

    # -- running services -------------------------------------------------------------------

    def start(self, service: str, *, instances: int = 1,
              shadow: str | None = None) -> RunningService:
        """Run ``instances`` instances of ``service`` in background threads, each its own
        member of the service's group (or of its shadow group). The streams it reads and
        writes exist when this returns; its partitions may still be being assigned (see
        ``RunningService.wait_assigned``)."""
        if not isinstance(instances, int) or instances < 1:
            raise InvalidRequestError(f"instances={instances!r} must be an integer ≥ 1")
        self.streams  # noqa: B018  (raises unless the platform is open)
        threads = ServiceThreads(self.app, lambda: open_streams(self.url), [service],
                                 instances=instances, shadow=shadow, **self._runner_options())
        handle = RunningService(threads.start(), self._group(self.app.get(service), shadow),
                                self.streams.admin().describe_group)
        self._handles.append(handle)
        return handle

    def running(self, service: str, *, instances: int = 1,
                shadow: str | None = None) -> RunningService:
        """``start``, for a ``with`` block: the instances stop when it ends."""
        return self.start(service, instances=instances, shadow=shadow)

    def run_until_idle(self, service: str, *, timeout: float = 10.0,
                       shadow: str | None = None) -> Statistics:
        """Run one instance of ``service`` in this thread until it has read everything there
        is and holds no record, then stop it cleanly (commit, checkpoint, final metrics);
        return its statistics. Raises ``AssertionError`` if that takes over ``timeout`` s."""
        spec = self.app.get(service)
        group = self._group(spec, shadow)
        if any(h.group == group and h.alive for h in self._handles):
            raise InvalidRequestError(
                f"service {service!r} is already running on this platform (group {group!r}); "
                "stop it before run_until_idle"
            )
        deadline = time.monotonic() + timeout
        runs: list[ServiceRunner] = []
        # Its own final metrics record is new input to a service that reads the metrics stream.
        hint = (f"; it reads {METRICS}, where each of its stops writes a record it has not "
                "read, so it is never idle: run it with running() and wait for what it writes"
                if METRICS in spec.inputs else "")
        while True:
            runner, streams = self._runner(service, shadow)
            runs.append(runner)
            idle = _Idle(deadline, lambda r: (
                f"service {service!r} was still busy after {timeout} s: {r.statistics()}, "
                f"committed lag {self.lag(service, shadow=shadow)}{hint}"))
            try:
                runner.run(until=idle)
            finally:
                streams.close()
            left = self.lag(service, shadow=shadow)
            if left == 0:
                return combine_statistics(runs)
            if time.monotonic() > deadline:  # records keep arriving (a cycle?)
                raise AssertionError(
                    f"service {service!r} stopped with {left} record(s) of lag after "
                    f"{timeout} s: {combine_statistics(runs)}{hint}"
                )

    def _runner(self, service: str, shadow: str | None) -> tuple[ServiceRunner, Streams]:
        self.streams  # noqa: B018  (raises unless the platform is open)
        streams = open_streams(self.url)
        try:
            runner = ServiceRunner(self.app, service, streams, shadow=shadow,
                                   **self._runner_options())
        except BaseException:
            streams.close()
            raise
        return runner, streams

    def _runner_options(self) -> dict[str, Any]:
        """What every runner on this platform is given besides its app and service."""
        return {"metrics_interval_s": self.metrics_interval_s,
                "poll_timeout_s": _POLL_TIMEOUT_S, "clock": self.clock,
                "files": self._files, "tables": self._tables}

    # -- output -------------------------------------------------------------------------------

    def records(self, stream: Stream[Any] | str) -> list[Record]:
        """Every record of ``stream`` (a handle or a name) now, in (partition, offset)
        order."""
        stream = stream_name(stream)
        reader = self._readers.get(stream)
        if reader is None:
            reader = self._readers[stream] = StreamReader(self.streams, stream)
        return reader.read()

    @overload
    def values(self, stream: Stream[P]) -> list[P]: ...

    @overload
    def values(self, stream: str) -> list[Any]: ...

    def values(self, stream: Stream[Any] | str) -> list[Any]:
        """``records(stream)`` decoded with the stream's declared codec."""
        return [decode_record(self.app, r) for r in self.records(stream)]

    def wait_for(self, stream: Stream[Any] | str, count: int, *,
                 timeout: float = 5.0) -> list[Any]:
        """Wait until ``stream`` holds at least ``count`` records; return all its values,
        decoded. On timeout, ``AssertionError`` shows what did arrive (and any exception
        records, which are often why)."""
        stream = stream_name(stream)
        deadline = time.monotonic() + timeout
        while True:
            self._check_services()
            found = self.records(stream)
            if len(found) >= count:
                return [decode_record(self.app, r) for r in found]
            if time.monotonic() >= deadline:
                raise AssertionError(self._shortfall(stream, count, timeout, found))
            time.sleep(0.01)

    def wait_until(self, condition: Callable[[], T], *, timeout: float = 5.0,
                   message: str = "the condition") -> T:
        """Poll ``condition()`` until it returns something truthy, and return that;
        ``AssertionError`` with its last value after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_services()
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"{message} did not hold within {timeout} s; last "
                                     f"value: {value!r}")
            time.sleep(0.01)

    def _shortfall(self, stream: str, count: int, timeout: float,
                   found: list[Record]) -> str:
        shown = [decode_record(self.app, r) for r in found[:_PREVIEW]]
        more = f" and {len(found) - _PREVIEW} more" if len(found) > _PREVIEW else ""
        lines = [f"{stream} holds {len(found)} record(s) after {timeout} s, not the {count} "
                 f"waited for; arrived: {shown!r}{more}"]
        failures = self.exceptions()
        if failures:
            lines.append(f"{EXCEPTIONS} holds {len(failures)} record(s):")
            lines += [f"  {f.service} gave up on {f.input.get('stream')}/"
                      f"{f.input.get('partition')}@{f.input.get('offset')} after "
                      f"{f.attempts} attempt(s): {f.error_type}: {f.message}"
                      for f in failures[:_PREVIEW]]
        running = [h for h in self._handles if h.alive]
        lines.append(f"running: {', '.join(h.service for h in running) or 'no service'}")
        return "\n".join(lines)

    def _check_services(self) -> None:
        for handle in self._handles:
            handle.check()

    # -- the platform's own streams ------------------------------------------------------

    def exceptions(self, service: str | None = None) -> list[ExceptionRecord]:
        """Exception records so far (of ``service`` only, if named)."""
        found = [parse_exception(r) for r in self.records(EXCEPTIONS)]
        return [f for f in found
                if f is not None and (service is None or f.service == service)]

    def metrics(self, service: str | None = None) -> list[MetricsRecord]:
        """Metrics records so far (of ``service`` only, if named), oldest first."""
        found = [MetricsRecord.parse(r.value) for r in self.records(METRICS)
                 if r.value is not None]
        return [m for m in found if service is None or m.service == service]

    def state_by_partition(self, service: str, *,
                           shadow: str | None = None) -> dict[int, dict[str, Any]]:
        """The latest checkpointed state of each partition of a stateful service."""
        spec = self.app.get(service)
        if not spec.stateful:
            raise InvalidRequestError(f"service {service!r} is not stateful; it has no state")
        store = CheckpointStore(self.streams, self._group(spec, shadow))
        store.refresh()
        out: dict[int, dict[str, Any]] = {}
        for number in range(self.app.streams[spec.inputs[0]].partitions):
            latest = store.latest(number)
            if latest is not None:
                out[number] = dict(latest.state)
        return out

    def state(self, service: str, *, shadow: str | None = None) -> dict[str, Any]:
        """All partitions' latest checkpointed state as one dict. A key held by two
        partitions is an ``AssertionError`` (use ``state_by_partition`` for such state)."""
        merged: dict[str, Any] = {}
        where: dict[str, int] = {}
        for number, shard in sorted(self.state_by_partition(service, shadow=shadow).items()):
            for key, value in shard.items():
                if key in merged:
                    raise AssertionError(
                        f"state key {key!r} of {service!r} is held by partitions {where[key]} "
                        f"and {number} ({merged[key]!r}, {value!r}); read state_by_partition()"
                    )
                merged[key], where[key] = value, number
        return merged

    def lag(self, service: str, *, shadow: str | None = None) -> int:
        """Records in the service's inputs (and retry stream) past its group's committed
        offsets."""
        spec = self.app.get(service)
        group = self._group(spec, shadow)
        admin = self.streams.admin()
        committed = {(p.stream, p.partition): p.committed
                     for p in admin.describe_group(group).partitions}
        total = 0
        for name in (*spec.inputs, retry_stream(group)):
            try:
                info = admin.describe_stream(name)
            except UnknownStreamError:  # the retry stream appears when the service first runs
                continue
            for part in info.partitions:
                at = committed.get((name, part.partition))
                position = part.start if at is None else max(at, part.start)
                total += max(part.end - position, 0)
        return total

    # -- helpers ------------------------------------------------------------------------------

    def _stream(self, stream: str) -> Stream[Any]:
        spec = self.app.streams.get(stream)
        if spec is None:
            raise InvalidRequestError(
                f"app {self.app.name!r} declares no stream {stream!r}; its streams: "
                f"{', '.join(sorted(self.app.streams)) or '(none)'}"
            )
        return spec

    def _open_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self.streams.open_producer()
        return self._producer

    @staticmethod
    def _group(spec: ServiceSpec, shadow: str | None) -> str:
        return spec.group if shadow is None else shadow_group(spec.group, shadow)

    def __repr__(self) -> str:
        where = self.directory if self._streams is not None else "closed"
        return f"TestPlatform({self.app.name!r}, {where})"


class _Idle:
    """``until`` for ``ServiceRunner.run``: true once a poll came back empty.

    The runner calls it between batches; a ``records_in`` count unchanged since the previous
    call means the last poll found nothing to read on any partition the runner owns."""

    def __init__(self, deadline: float, busy: Callable[[ServiceRunner], str]) -> None:
        self._deadline = deadline
        self._busy = busy
        self._seen = -1

    def __call__(self, runner: ServiceRunner) -> bool:
        if time.monotonic() > self._deadline:
            raise AssertionError(self._busy(runner))
        count = runner.metrics.records_in
        quiet = count == self._seen
        self._seen = count
        return quiet
