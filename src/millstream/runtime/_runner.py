"""Running one service: the loop that polls, handles and delivers, its rebalancing and
its lifecycle.

Every record takes one path (``_handle``): decode, run the handler (retried per the
service's ``RetryPolicy``), encode what it returned into output rows. What happens to those
rows — when they are sent, made durable, and when the input offsets and a stateful service's
state are stored, in which order — is the business of the service's delivery mode
(``runtime._delivery``: at-least-once, checkpointed, transactional), which the runner tells
what happened: a batch was handled, time passed, partitions moved, the service stops.

Around the handler sits the universal microarchitecture:

* a record that cannot be decoded goes to the exceptions stream at once (retrying cannot
  change its bytes); a handler that raises is retried and then goes there too — processing
  continues either way, and the offset moves on only once the exception record is written;
* counters, a processing-time histogram and lag are written to the metrics stream every
  ``metrics_interval_s`` and at shutdown (``statistics()`` reads them live);
* a stateful service's state is sharded by partition and loaded when its partitions are
  assigned (``ServiceState``); its delivery mode checkpoints it;
* an operator handler (a windowed or joining service, ``service._operator``) also gets its
  hooks called (``OperatorHooks``): ``flush`` by the delivery mode before a shard's
  checkpoint or transaction, ``advance`` from the loop about once a second.

``stop()`` (the CLI calls it on SIGTERM/SIGINT) lets the record in hand finish, then the
delivery mode makes everything durable and commits, final metrics are written and the
service leaves its group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from millstream._wellknown import (
    METRICS,
    retry_stream,
)
from millstream.errors import DeliveryError
from millstream.faults import fault_point
from millstream.files._base import FileStore
from millstream.files._pins import Pins
from millstream.records import Record, StreamPartition
from millstream.runtime._clock import SYSTEM_CLOCK, Clock
from millstream.runtime._concurrent import Concurrent, concurrent_for
from millstream.runtime._delivery import Delivery, Wiring, delivery_for, state_for
from millstream.runtime._handling import (
    REPLAY_PARTITION_HEADER,
    REPLAY_STREAM_HEADER,
    Interrupted,
    RecordHandler,
)
from millstream.runtime._metrics import Metrics, Statistics, counts_in
from millstream.runtime._operator_hooks import OperatorHooks, operator_of
from millstream.runtime._outputs import Encoder, Outputs
from millstream.runtime._streams import ensure_app_streams
from millstream.runtime._table_outputs import TableOutputs
from millstream.service._app import App, Emit
from millstream.service._claimed import app_streams
from millstream.service._context import Context
from millstream.service._files import ServiceFiles
from millstream.service._guarantees import check_at_start
from millstream.service._shadow import shadow_group
from millstream.service._tables import ServiceTables
from millstream.streams._base import Producer, RecordBatch, Streams
from millstream.tables._base import Tables

__all__ = ["REPLAY_PARTITION_HEADER", "REPLAY_STREAM_HEADER", "ServiceRunner"]

log = logging.getLogger(__name__)

#: Records faster than this are timed one in SAMPLE_STRIDE (see _process_batch).
SAMPLE_BELOW_NS = 50_000
SAMPLE_STRIDE = 8


class ServiceRunner:
    """Runs one service of an app on a streams backend, in the calling thread."""

    def __init__(
        self,
        app: App,
        service: str,
        streams: Streams,
        *,
        version: str = "1",
        shadow: str | None = None,
        metrics_interval_s: float = 5.0,
        plumbing: bool = True,
        poll_timeout_s: float = 0.1,
        clock: Clock = SYSTEM_CLOCK,
        instance: int = 0,
        files: FileStore | None = None,
        tables: Tables | None = None,
    ) -> None:
        spec = app.get(service)
        check_at_start(app, spec)  # the app may have been changed since it was declared
        streams = app_streams(app, streams, files)
        self.app = app
        self.spec = spec
        self.streams = streams
        self.shadow = shadow
        self.group = spec.group if shadow is None else shadow_group(spec.group, shadow)
        self.version = shadow or version
        self.retry_stream = retry_stream(self.group)
        self._encoder = Encoder(app, spec, shadow)
        #: declared output name -> the stream actually written (shadow streams for a shadow)
        self.output_streams = self._encoder.streams
        self.clock = clock
        #: which of the service's parallel instances this is (0 .. N-1); names its
        #: transactional id, so two live instances must not share it
        self.instance = instance
        self.metrics = Metrics(
            app.name, service, self.group, self.version, clock=clock, instance=instance,
            inputs=spec.inputs, outputs=self.output_streams.values(),
            stores=dict.fromkeys([*spec.uses, *(f"tables:{t.name}" for t in spec.tables)]))
        self._metrics_interval = metrics_interval_s
        self._plumbing = plumbing
        self._poll_timeout = poll_timeout_s
        self._stopping = False
        self._running = False
        self._failed = False  # run() raised: leaving the group commits nothing more
        self.files = files
        # objects written for records not yet durable (ctx.files, checkpoint states): pinned
        # against `files gc`, released once the delivery mode says every output is durable
        self._pins = Pins(files) if files is not None else None
        self._done: dict[tuple[str, int], int] = {}  # next offset per input partition
        self._outputs = Outputs()
        self._state = state_for(spec, streams, self.group, files=files, pins=self._pins,
                                done=self._done)
        self.ctx = Context(app.name, service, streams, spec.outputs, self._state is not None,
                           declared=app.streams)
        self.ctx.shadow = shadow
        self.ctx._emit_now = self._emit_now
        if files is not None:
            self.ctx._files = ServiceFiles(files, self.group, self._pins)
        if tables is not None:
            self.ctx._tables = ServiceTables(tables, shadow)
        self._handler = RecordHandler(
            app, spec, encoder=self._encoder, outputs=self._outputs, state=self._state,
            ctx=self.ctx if spec.takes_context else None, metrics=self.metrics, clock=clock,
            plumbing=plumbing, retry_stream=self.retry_stream,
            send_exception=self._send_exception, stopping=lambda: self._stopping)
        operator = operator_of(spec)
        #: an operator's flush and advance hooks (a windowed or joining service), or None
        self._hooks = None if operator is None or self._state is None else OperatorHooks(
            app, spec, operator, self._state, self._encoder, self._outputs, clock,
            report=lambda source, error: self._handler.report(
                source, getattr(error, "stage", "reported"), error, 1, None))
        self._stride = 1  # records per processing-time sample (see _process_batch)
        self._commit_ns = int(spec.commit_interval * 1e9)
        self._consumer: Any = None
        self._producer: Producer | None = None
        self._live: Producer | None = None  # for ctx.emit_now, opened on first use
        #: how outputs, offsets and state become durable, in which order (the one object
        #: that knows the service's delivery mode)
        self.delivery: Delivery = delivery_for(
            spec, streams, Wiring(service, self._outputs, self._done, self.metrics,
                                  self._refused, self._release_pins,
                                  spec.commit_interval, self._flush_shards),
            state=self._state, retry_stream=self.retry_stream,
            transactional_id=f"{self.group}.{instance}", partitions=self._partitions)
        #: the tables among its outputs, fed after each of its commits
        self._tables_out = TableOutputs(service, spec.tables, streams, tables,
                                        self.output_streams, shadow)
        self.delivery.on_commit(self._tables_out.after_commit)
        #: an async service's records in flight (None: one at a time, by _process_batch)
        self._concurrent: Concurrent | None = None if not spec.asynchronous else concurrent_for(
            app, spec, encoder=self._encoder, outputs=self._outputs, done=self._done,
            state=self._state, ctx=self.ctx if spec.takes_context else None,
            metrics=self.metrics, clock=clock, plumbing=plumbing,
            retry_stream=self.retry_stream, function=lambda: self._handler.function,
            emit_now=self._emit_now, send=self.delivery.send,
            send_exception=self._send_exception, poll_timeout_s=poll_timeout_s,
            stopping=lambda: self._stopping)

    # -- public -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the record in hand, commit and return (any thread)."""
        self._stopping = True

    def statistics(self) -> Statistics:
        """Counters, the processing-time summary and lag of this run, now."""
        return self.metrics.statistics()

    def prepare(self) -> None:
        """Create the streams the service reads and writes, and the platform's streams."""
        ensure_app_streams(self.app, self.streams, services=[self.spec.name],
                           shadow=self.shadow)

    def run(self, until: Callable[[ServiceRunner], bool] | None = None) -> None:
        """Process records until ``stop()`` is called (or ``until(self)`` is true after a
        batch), then shut down cleanly."""
        self.prepare()
        with ExitStack() as lifespan:  # exited after the last record, also on failure
            if self._concurrent is not None:  # its loop closes last (an async lifespan exits
                lifespan.callback(self._concurrent.close)  # on it)
            if self.spec.lifespan is not None:
                opened = self.spec.lifespan(self.ctx)
                self._handler.give(lifespan.enter_context(opened) if self._concurrent is None
                                   else self._concurrent.enter(opened, lifespan))
            self._loop(until)

    def _loop(self, until: Callable[[ServiceRunner], bool] | None) -> None:
        spec = self.spec
        self._running = True
        try:  # from here on, what was opened is closed, whatever happens
            self._producer = self.streams.open_producer()
            consumer = self._consumer = self.streams.open_consumer(self.group)
            now = self.clock.monotonic()
            self.delivery.start(consumer, self._producer, now)
            consumer.subscribe([*spec.inputs, self.retry_stream],
                               on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._tables_out.catch_up()  # rows a crash left between a commit and its batch
            next_metrics = now + self._metrics_interval
            concurrent = self._concurrent
            hooks = self._hooks
            while not self._stopping:
                if concurrent is not None:  # an async handler: records in flight together
                    concurrent.step(consumer)
                else:
                    batch = consumer.poll_batch(max_records=spec.max_batch,
                                                timeout=self._poll_timeout)
                    if batch:
                        self._process_batch(batch)
                now = self.clock.monotonic()
                if hooks is not None and hooks.maybe_advance(now):
                    self.delivery.send()  # what the operator emitted as time moved on
                self.delivery.tick(now)
                if self._plumbing and now >= next_metrics:
                    self._emit_metrics(final=False)
                    next_metrics = now + self._metrics_interval
                if until is not None and until(self):
                    break
            self._shutdown()
        except BaseException:
            # outputs sent since the last commit may be lost (a failed send, flush or
            # transaction): the revocation as the consumer closes must not commit their inputs
            self._failed = True
            raise
        finally:
            self._running = False
            self._close()

    # -- processing -------------------------------------------------------------------------

    def _process_batch(self, batch: RecordBatch) -> None:
        done = self._done
        handle = self._handler.bind(batch)
        timing = self._plumbing
        clock = time.perf_counter_ns
        durations: list[int] = []
        lap = durations.append
        # Timing every record costs two clock readings and a histogram entry (~0.3 µs): for
        # records that take longer than SAMPLE_BELOW_NS each one is timed; faster ones are
        # timed one in SAMPLE_STRIDE, each sample standing for that many records.
        stride = self._stride if timing else 0
        batch_start = clock() if timing else 0
        t0 = now = 0
        # Slow records (timed one by one): every commit interval inside the batch the
        # delivery mode may deliver what is done, so a record that is done does not wait for
        # the rest of its batch (and is not redone after a crash).
        eager = timing and stride == 1
        commit_ns = self._commit_ns
        last_commit = batch_start
        n = handled = len(batch)
        for i in range(n):
            if self._stopping:
                handled = i
                break
            sampled = timing and i % stride == 0
            if sampled:
                t0 = clock()
            try:
                handle(i)
            except Interrupted:
                handled = i
                break
            if sampled:
                now = clock()
                lap(now - t0)
            if eager and now - last_commit >= commit_ns:
                self._done_up_to(batch, i + 1)
                self.delivery.slow_record_done()
                last_commit = clock()
        if handled == n:  # past the batch (and past what the read skipped, such as markers)
            for sp, end in batch.ends().items():
                done[sp] = end
        else:
            self._done_up_to(batch, handled)
        if timing and handled:
            self.metrics.record_batch(durations, stride, handled, counts_in(batch, handled))
            per_record = (clock() - batch_start) // handled
            self._stride = 1 if per_record >= SAMPLE_BELOW_NS else SAMPLE_STRIDE
        if self._state is not None:
            self._state.since_checkpoint += handled
        self.delivery.send()
        fault_point("service.batch.after_send")

    def _done_up_to(self, batch: RecordBatch, handled: int) -> None:
        """The first ``handled`` records of ``batch`` are done (a batch left part-way)."""
        done = self._done
        for stream, partition, offset in zip(batch.streams()[:handled],
                                             batch.partitions()[:handled],
                                             batch.offsets()[:handled], strict=True):
            done[stream, partition] = offset + 1

    def _emit_now(self, declared: str, value: Any, key: bytes | str | None,
                  record: Record | None = None) -> None:
        """``ctx.emit_now``: encode like any output, send at once, outside the attempt (and
        outside a transaction: with its own producer). ``record``: the input it is for (an
        async service's own context says; else the one being handled)."""
        stream, key_bytes, data, headers, _ = self._encoder.encode(record or self.ctx.record,
                                                                  Emit(declared, value, key))
        if self._live is None:
            self._live = self.streams.open_producer()
        self._live.send(stream, data, key=key_bytes, headers=headers)
        self.metrics.count_out(stream, 1)

    def _flush_shards(self, numbers: Iterable[int] | None) -> None:
        """An operator's ``flush`` for shards ``numbers`` (None: all), before their
        checkpoint or transaction."""
        if self._hooks is not None:
            self._hooks.flush(numbers)

    def _partitions(self, stream: str) -> int:
        declared = next((d for d, a in self.output_streams.items() if a == stream), stream)
        spec = self.app.streams.get(declared)
        return spec.partitions if spec is not None else 1

    def _send_exception(self, value: bytes, key: bytes) -> None:
        self.delivery.send_exception(value, key)

    def _refused(self, record: Record, error: BaseException) -> None:
        """An output the producer refused (too large): its input goes to the exceptions
        stream."""
        self._handler.report(record, "encode", error, 1, None)

    def _release_pins(self) -> None:
        """Every output so far is durable: drop the pins of the objects they refer to."""
        if self._pins is None or not self._pins.holding:
            return
        if self._live is not None:  # ctx.emit_now's records may refer to them too
            self._live.flush()
        self._pins.release()

    def _emit_metrics(self, *, final: bool) -> None:
        consumer = self._consumer
        try:
            self.metrics.lag = dict(consumer.lag())
            self.metrics.assigned = list(consumer.assignment())
        except Exception as exc:  # lag is best effort; the record still goes out
            log.debug("lag unavailable: %s", exc)
        record = self.metrics.record(final=final)
        assert self._producer is not None
        self._producer.send(METRICS, record.to_json(), key=self.group.encode())

    # -- rebalancing ------------------------------------------------------------------------

    def _on_revoke(self, partitions: list[StreamPartition]) -> None:
        gone = set(partitions)
        self.metrics.assigned = [sp for sp in self.metrics.assigned if sp not in gone]
        if not self._failed:  # after a failure the group handles those records again
            if self._concurrent is not None:  # its records in flight there finish first
                self._concurrent.revoke(partitions)
            self.delivery.revoke(partitions)
        for sp in gone:
            self._done.pop((sp.stream, sp.partition), None)

    def _on_assign(self, partitions: list[StreamPartition]) -> None:
        # statistics() shows the assignment at once, not only from the next metrics record
        self.metrics.assigned = [*self.metrics.assigned,
                                 *(sp for sp in partitions if sp not in self.metrics.assigned)]
        self.delivery.assign(partitions)

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._concurrent is not None:  # the records in flight finish first
            self._concurrent.drain()
        self.delivery.finish()
        if self._plumbing:
            self._emit_metrics(final=True)
        if self._producer is not None:
            self._producer.flush()
        if self._live is not None:
            self._live.flush()

    def _close(self) -> None:
        self._tables_out.close()  # first: a revocation while the consumer closes feeds nothing
        for closer in (self._consumer, self.delivery, self._producer, self._live):
            if closer is None:
                continue
            try:
                closer.close()
            except Exception as exc:  # closing is best effort after a failure
                if closer is self._consumer:
                    log.debug("closing %s: %s", type(closer).__name__, exc)
                    continue
                # a producer that cannot close holds records never sent: say so, and count them
                lost = exc.undelivered if isinstance(exc, DeliveryError) else None
                self.metrics.undelivered += lost or 0
                log.error("service %s: %s record(s) it sent were never delivered (closing its "
                          "%s failed: %s)", self.spec.name,
                          "an unknown number of" if lost is None else lost,
                          type(closer).__name__, exc)
        self._consumer = self._producer = self._live = None
        if self._concurrent is not None:
            self._concurrent.cancel()
