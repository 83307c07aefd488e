"""Running an ``async def`` service: up to ``concurrency`` records at once, in order within a
key, on an asyncio loop stepped by the runner's thread.

The runner calls ``step(consumer)`` where a sync service polls and handles a batch. A step
polls as many records as there is room for (none while full, but a keep-alive poll at least
every ``KEEPALIVE_S``, whose records are handed back with a seek, so the group never takes
the member for dead), starts what it may, and runs the loop until fewer than ``concurrency``
records are queued to start while more would fit (time to poll again), or a slice passes
(``SLICE_S``; ``LONG_SLICE_S`` with enough queued: a finished record's slot is refilled from
the queue inside the loop, so polls can be rare). Between steps the loop is not running: the
delivery mode commits, metrics go out and rebalances happen on the runner's thread, with
the records in flight suspended at their ``await``.

Order and safety:

* **Within a key, in offset order**: a record starts only once the record before it with the
  same key has finished; records of other keys start at once, up to ``concurrency``. A
  keyless record has no order to keep: each is its own key.
* **Released in offset order per partition**: a finished record's output rows, exception
  records and offset are held until every record before it on its partition has finished,
  then handed to the runner's outputs and progress together. The delivery mode therefore
  sees exactly what a one-at-a-time run would have produced so far — it commits offsets only
  below the lowest record not yet finished, and an exactly-once transaction holds the outputs
  of precisely the offsets it commits.
* **Bounded memory**: at most ``max(4 × concurrency, max_batch)`` records are held (running,
  queued behind their key, or finished and waiting for an earlier one).
* A revoked partition's running records finish first (its queued ones are dropped: their
  next owner handles them); a stop finishes what is running and starts nothing more (a
  record waiting to be retried is left for the next run).

Fault point ``service.concurrent.full``: a record began in the last free slot and reached
its first ``await``, so all ``concurrency`` records are in their handlers (visited each time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from millstream.faults import fault_point
from millstream.records import Record, StreamPartition
from millstream.runtime._clock import Clock
from millstream.runtime._concurrent_handling import AsyncRecordHandler, InFlight
from millstream.runtime._handling import Interrupted
from millstream.runtime._metrics import Metrics
from millstream.runtime._outputs import Encoder, Outputs
from millstream.runtime._state import ServiceState
from millstream.service._app import App, ServiceSpec
from millstream.service._context import Context
from millstream.streams._base import Consumer

__all__ = ["KEEPALIVE_S", "LONG_SLICE_S", "SLICE_S", "Concurrent", "concurrent_for"]

log = logging.getLogger(__name__)

#: while no more records fit, poll (and hand back what comes) at least this often
KEEPALIVE_S = 1.0
#: with room for more records and few queued, the loop runs at most this long before the
#: next poll
SLICE_S = 0.005
#: with a slot's worth queued (or no room), at most this long: the runner's commits and
#: metrics come due between slices
LONG_SLICE_S = 0.05


class Concurrent:
    """The records of one async service in flight, and the loop that runs them."""

    def __init__(self, handler: AsyncRecordHandler, *, concurrency: int, max_batch: int,
                 outputs: Outputs, done: dict[tuple[str, int], int],
                 send: Callable[[], None], send_exception: Callable[[bytes, bytes], None],
                 metrics: Metrics, plumbing: bool, poll_timeout_s: float,
                 stopping: Callable[[], bool]) -> None:
        self._handler = handler
        self._n = concurrency
        self._max_batch = max_batch
        #: records held at most: running, queued behind their key, or finished early
        self.limit = max(4 * concurrency, max_batch)
        self._outputs = outputs
        self._done = done
        self._send = send
        self._send_exception = send_exception
        self._metrics = metrics
        self._plumbing = plumbing
        self._poll_timeout = poll_timeout_s
        self._stopping = stopping
        self._opened: asyncio.AbstractEventLoop | None = None  # made on first use
        #: per input partition, its held records in offset order
        self._order: dict[tuple[str, int], deque[InFlight]] = {}
        #: keys with a record running -> their next records, in order
        self._busy: dict[bytes, deque[InFlight]] = {}
        #: records waiting for a slot, in the order polled; a record of a key with one here
        #: queues behind it (it may start only after them)
        self._ready: deque[InFlight] = deque()
        self._ready_keys: Counter[bytes] = Counter()
        self._running = 0  # tasks started and not finished
        self._awaiting = 0  # of those, the ones whose handler has begun
        self.held = 0
        self._durations: list[int] = []
        self._read: dict[str, int] = {}  # the finished records of _durations, per stream
        self._released = False  # something went to the outputs since the last send
        self._wake: asyncio.Future[None] | None = None
        self._fatal: BaseException | None = None
        self._last_poll = 0.0
        self._draining = False  # revoke() or drain() waits for records to finish
        self._cancelled = False  # cancel() was called: nothing more starts

    # -- what the runner calls -------------------------------------------------------------

    def step(self, consumer: Consumer) -> None:
        """Poll what fits, start what may start, run the loop a while, release what
        finished in order."""
        room = self.limit - self.held
        now = time.monotonic()
        if room > 0:
            records = consumer.poll(max_records=min(room, self._max_batch),
                                    timeout=0.0 if self._running else self._poll_timeout)
            self._last_poll = now
            for record in records:
                self._admit(record)
        elif now - self._last_poll >= KEEPALIVE_S:
            self._keep_alive(consumer)
        if self._running:
            # a poll is worth it only when the queue runs short and more records fit
            short = len(self._ready) < self._n and self.held < self.limit
            self._run(SLICE_S if short else LONG_SLICE_S)
        self._deliver()

    def revoke(self, partitions: Iterable[StreamPartition]) -> None:
        """Partitions are taken away: drop their queued records, let their running ones
        finish and release them; what is left (finished after one that never will) goes."""
        gone = {(sp.stream, sp.partition) for sp in partitions}
        if not gone.intersection(self._order):
            return
        self._drop_queued(lambda entry: (entry.record.stream, entry.record.partition) in gone)
        self._draining = True
        try:
            while any(e.task is not None for sp in gone for e in self._order.get(sp, ())):
                self._run(self._poll_timeout)
        finally:
            self._draining = False
        for sp in gone:
            left = self._order.pop(sp, None)
            if left:
                self.held -= len(left)
                for entry in left:  # never sent by this member
                    entry.handed_over()
        self._deliver()

    def drain(self) -> None:
        """The service stops: start nothing more, let the running records finish (a record
        waiting to be retried is left for the next run) and release them."""
        self._drop_queued(lambda entry: True)
        for sp in list(self._order):
            for entry in self._order[sp]:
                if entry.retrying and entry.task is not None:
                    entry.task.cancel()
        self._draining = True
        while self._running:
            self._run(self._poll_timeout)
        self._deliver()

    def enter(self, opened: Any, stack: ExitStack) -> Any:
        """Enter the lifespan's context manager ``opened`` — an async one (``async with``,
        ``@asynccontextmanager``) on this service's loop — exiting it with ``stack``."""
        if hasattr(opened, "__enter__") or not hasattr(opened, "__aenter__"):
            return stack.enter_context(opened)
        loop = self._loop
        value = loop.run_until_complete(opened.__aenter__())

        def exit_(kind: Any, error: Any, trace: Any) -> bool:
            return bool(loop.run_until_complete(opened.__aexit__(kind, error, trace)))

        stack.push(exit_)
        return value

    def cancel(self) -> None:
        """Cancel the records still running (after a failure: nothing more is released, and
        nothing more starts — a cancelled record's key does not hand its slot on)."""
        self._cancelled = True
        loop = self._opened
        if loop is None or loop.is_closed():
            return
        while tasks := [t for t in asyncio.all_tasks(loop) if not t.done()]:
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def close(self) -> None:
        """Cancel what still runs and close the loop (after the lifespan exited on it);
        idempotent."""
        loop = self._opened
        if loop is None or loop.is_closed():
            return
        self.cancel()
        for held in self._order.values():  # never sent by this run
            for entry in held:
                entry.handed_over()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._opened is None:
            self._opened = asyncio.new_event_loop()
        return self._opened

    # -- admitting and starting ------------------------------------------------------------

    def _admit(self, record: Record) -> None:
        entry = InFlight(record)
        sp = (record.stream, record.partition)
        held = self._order.get(sp)
        if held is None:
            held = self._order[sp] = deque()
        held.append(entry)
        self.held += 1
        key = entry.key
        if key is not None and key in self._ready_keys:  # behind an earlier one of its key
            self._ready.append(entry)
            self._ready_keys[key] += 1
        elif key is not None and key in self._busy:
            self._busy[key].append(entry)
        elif self._running < self._n:
            self._start(entry)
        else:
            self._ready.append(entry)
            if key is not None:
                self._ready_keys[key] += 1

    def _start(self, entry: InFlight) -> None:
        self._running += 1
        if entry.key is not None:
            self._busy[entry.key] = deque()
        entry.task = self._loop.create_task(self._process(entry))

    def _keep_alive(self, consumer: Consumer) -> None:
        """Poll though nothing more fits (the group sees the member alive), and seek back to
        what came: it is polled again once there is room."""
        self._last_poll = time.monotonic()
        first: dict[StreamPartition, int] = {}
        for record in consumer.poll(max_records=1, timeout=0.0):
            first.setdefault(StreamPartition(record.stream, record.partition), record.offset)
        for sp, offset in first.items():
            consumer.seek(sp, offset)

    def _drop_queued(self, chosen: Callable[[InFlight], bool]) -> None:
        """Forget the queued (not started) records ``chosen`` says: they are handled again
        by whoever polls them next."""
        self._ready = deque(e for e in self._ready if not chosen(e))
        self._ready_keys = Counter(e.key for e in self._ready if e.key is not None)
        for key, waiting in self._busy.items():
            if any(chosen(e) for e in waiting):
                self._busy[key] = deque(e for e in waiting if not chosen(e))

    # -- running ---------------------------------------------------------------------------

    async def _process(self, entry: InFlight) -> None:
        self._awaiting += 1
        if self._awaiting >= self._n:  # the last slot: look again once it reached an await
            self._loop.call_soon(self._full)
        entry.started_ns = time.perf_counter_ns()
        try:
            await self._handler.handle(entry)
            entry.done = True
        except Interrupted:
            pass  # the service stops: the record is left unfinished, for the next run
        except asyncio.CancelledError:
            pass  # closing after a failure: nothing more is released
        except BaseException as exc:  # the machinery failed: the service stops with it
            self._fatal = self._fatal or exc
        finally:
            self._awaiting -= 1
            try:
                self._finished(entry)
            except BaseException as exc:
                self._fatal = self._fatal or exc
                self._wake_up()

    def _full(self) -> None:
        if self._awaiting >= self._n:
            fault_point("service.concurrent.full")

    def _run(self, timeout: float) -> None:
        """Run the loop until it is time to poll (few records queued, room for more), a
        record finished while draining, or ``timeout``."""
        loop = self._loop
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = loop.call_later(timeout, _settle, wake)
        try:
            loop.run_until_complete(wake)
        finally:
            timer.cancel()
            self._wake = None
        if self._fatal is not None:
            raise self._fatal

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _finished(self, entry: InFlight) -> None:
        """``entry`` finished (or was interrupted): start the next of its key and what fits,
        release its partition's finished records in offset order."""
        self._running -= 1
        entry.task = None
        if self._cancelled:  # closing after a failure: start and release nothing more
            return
        if entry.done:
            self._durations.append(time.perf_counter_ns() - entry.started_ns)
            read = self._read
            read[entry.record.stream] = read.get(entry.record.stream, 0) + 1
        busy = self._busy
        key = entry.key
        if key is not None:
            waiting = busy.get(key)
            if waiting:  # the key stays busy: the next record of it starts in this slot
                nxt = waiting.popleft()
                self._running += 1
                nxt.task = self._loop.create_task(self._process(nxt))
            else:
                busy.pop(key, None)
        ready = self._ready
        while self._running < self._n and ready:
            nxt = ready.popleft()
            if nxt.key is not None:
                left = self._ready_keys[nxt.key] - 1
                if left:
                    self._ready_keys[nxt.key] = left
                else:
                    del self._ready_keys[nxt.key]
                if nxt.key in busy:
                    busy[nxt.key].append(nxt)
                    continue
            self._start(nxt)
        self._release(entry.record.stream, entry.record.partition)
        if self._draining or (len(ready) < self._n and self.held < self.limit):
            self._wake_up()  # time to poll for more, or to see whether the drain is done

    def _release(self, stream: str, partition: int) -> None:
        held = self._order.get((stream, partition))
        if not held or not held[0].done:
            return
        rows = self._outputs.rows
        last = None
        while held and held[0].done:
            last = held.popleft()
            self.held -= 1
            if last.rows:
                rows += last.rows
            last.handed_over()
            for value, key in last.exceptions:
                self._send_exception(value, key)
        assert last is not None
        self._done[stream, partition] = last.record.offset + 1
        self._released = True

    def _deliver(self) -> None:
        """Hand the released outputs to the delivery mode, count the finished records."""
        if self._durations:
            durations, self._durations = self._durations, []
            read, self._read = self._read, {}
            if self._plumbing:
                self._metrics.record_batch(durations, 1, len(durations), read)
            else:
                self._metrics.count_in(read)
        if self._released:
            self._released = False
            self._send()


def _settle(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


def concurrent_for(app: App, spec: ServiceSpec, *, encoder: Encoder, outputs: Outputs,
                   done: dict[tuple[str, int], int], state: ServiceState | None,
                   ctx: Context | None, metrics: Metrics, clock: Clock, plumbing: bool,
                   retry_stream: str, function: Callable[[], Callable[..., Any]],
                   emit_now: Callable[..., None], send: Callable[[], None],
                   send_exception: Callable[[bytes, bytes], None], poll_timeout_s: float,
                   stopping: Callable[[], bool]) -> Concurrent:
    """The ``Concurrent`` of async service ``spec``, wired to its runner's parts:
    ``function()`` gives the handler to await (with the lifespan's resource, once given),
    ``emit_now(declared, value, key, record)`` is ``ctx.emit_now``, ``send()`` hands the
    released outputs to the delivery mode."""
    handler = AsyncRecordHandler(
        app, spec, encoder=encoder, state=state, ctx=ctx, metrics=metrics, clock=clock,
        plumbing=plumbing, retry_stream=retry_stream, function=function, emit_now=emit_now,
        stopping=stopping)
    return Concurrent(handler, concurrency=spec.concurrency, max_batch=spec.max_batch,
                      outputs=outputs, done=done, send=send, send_exception=send_exception,
                      metrics=metrics, plumbing=plumbing, poll_timeout_s=poll_timeout_s,
                      stopping=stopping)
