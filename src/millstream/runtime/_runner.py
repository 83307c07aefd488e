"""Running one service: the poll → decode → handle → encode → send → commit loop.

Delivery is at-least-once by default: the input offsets a batch of records reached are
committed only after every output those records produced is durably written (the producer is
flushed first). With ``exactly_once`` on a backend that supports transactions, outputs,
exception records, checkpoints and input offsets are committed in one transaction, so a crash
anywhere leaves either all of them or none.

Around the handler sits the universal microarchitecture:

* a record that cannot be decoded goes to the exceptions stream at once (retrying cannot
  change its bytes); a handler that raises is retried per the service's ``RetryPolicy`` and
  then goes there too — processing continues either way, and the offset moves on only once the
  exception record is written;
* counters, a processing-time histogram and lag are written to the metrics stream every
  ``metrics_interval_s`` and at shutdown (``statistics()`` reads them live);
* a stateful service's state is checkpointed with the input offsets it matches every
  ``checkpoint_interval`` seconds or ``checkpoint_records``, on revocation and at shutdown, and
  reloaded when its partitions are assigned.

``stop()`` (the CLI calls it on SIGTERM/SIGINT) lets the record in hand finish, then sends,
commits, checkpoints, writes final metrics and leaves the group.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from types import GeneratorType
from typing import Any

from millstream._wellknown import (
    CHECKPOINTS,
    EXCEPTIONS,
    METRICS,
    REPLAY_HEADER,
    WRITER_HEADER,
    ensure_platform_streams,
    retry_stream,
    shadow_stream,
)
from millstream.codecs import Codec, ModelCodec, header
from millstream.errors import (
    DeliveryError,
    FencedError,
    InvalidRequestError,
    RecordTooLargeError,
)
from millstream.faults import fault_point
from millstream.files._base import FileStore
from millstream.files._pins import Pins
from millstream.records import Headers, Record, StreamPartition
from millstream.runtime._clock import SYSTEM_CLOCK, Clock
from millstream.runtime._failures import describe_failure
from millstream.runtime._metrics import Metrics, Statistics
from millstream.runtime._state import CheckpointStore, Shard
from millstream.service._app import App, Emit
from millstream.service._claimed import app_streams
from millstream.service._context import Context
from millstream.service._files import ServiceFiles
from millstream.service._tables import ServiceTables
from millstream.streams._base import (
    Producer,
    Streams,
    SupportsTransactions,
    TransactionalProducer,
)
from millstream.tables._base import Tables

__all__ = ["REPLAY_STREAM_HEADER", "ServiceRunner"]

log = logging.getLogger(__name__)

#: Records faster than this are timed one in SAMPLE_STRIDE (see _process_batch).
SAMPLE_BELOW_NS = 50_000
SAMPLE_STRIDE = 8

#: Header on a replayed record: the input stream it originally came from.
REPLAY_STREAM_HEADER = "millstream-replay-stream"
#: Header on a replayed record: its original partition (the state shard it belongs to).
REPLAY_PARTITION_HEADER = "millstream-replay-partition"


class _EncodeError(Exception):
    """An output could not be encoded: a bug in the handler, not retried."""


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
        streams = app_streams(app, streams, files)
        self.app = app
        self.spec = spec
        self.streams = streams
        self.shadow = shadow
        self.group = spec.group if shadow is None else f"{spec.group}.shadow.{shadow}"
        self.version = shadow or version
        self.retry_stream = retry_stream(self.group)
        #: declared output name -> the stream actually written (shadow streams for a shadow)
        self.output_streams = {
            s: s if shadow is None else shadow_stream(s, shadow) for s in spec.outputs
        }
        self._in_codecs: dict[str, Codec[Any]] = {s: app.streams[s].codec for s in spec.inputs}
        self._out_codecs: dict[str, Codec[Any]] = {s: app.streams[s].codec for s in spec.outputs}
        # outputs other services of the app write too: each record names its writer, so
        # `diff` (and readers) can tell whose it is
        writer = (WRITER_HEADER, service.encode())
        self._stamps: dict[str, tuple[str, bytes]] = {
            s: writer for s in spec.outputs if len(app.writers_of(s)) > 1}
        self.clock = clock
        #: which of the service's parallel instances this is (0 .. N-1); names its
        #: transactional id, so two live instances must not share it
        self.instance = instance
        self.metrics = Metrics(app.name, service, self.group, self.version, clock=clock,
                               instance=instance)
        self._identity = dict(self.metrics.identity)
        self._metrics_interval = metrics_interval_s
        self._plumbing = plumbing
        self._poll_timeout = poll_timeout_s
        self._stopping = False
        self._running = False
        self.ctx = Context(app.name, service, streams, spec.outputs, spec.stateful)
        self.ctx.shadow = shadow
        self.ctx._emit_now = self._emit_now
        self.files = files
        # objects written for records not yet durable (ctx.files, checkpoint states): pinned
        # against `files gc`, released at each commit
        self._pins = Pins(files) if files is not None else None
        if files is not None:
            self.ctx.add_store("files", ServiceFiles(files, self.group, self._pins))
        if tables is not None:
            self.ctx.add_store("tables", ServiceTables(tables, shadow))
        self._shards: dict[int, Shard] = {}
        self._checkpoints = (CheckpointStore(streams, self.group, files=files,
                                             pins=self._pins)
                             if spec.stateful else None)
        self._done: dict[tuple[str, int], int] = {}  # next offset per input partition
        self._committed_at: dict[StreamPartition, int] = {}
        self._stride = 1  # records per processing-time sample (see _process_batch)
        self._since_checkpoint = 0
        self._consumer: Any = None
        self._producer: Producer | None = None
        self._live: Producer | None = None  # for ctx.emit_now, opened on first use
        self._txn: TransactionalProducer | None = None
        self._txn_dirty = False
        # outputs of the current batch, as parallel columns (one entry per output record)
        self._o_streams: list[str] = []
        self._o_keys: list[bytes | None] = []
        self._o_values: list[bytes | None] = []
        self._o_headers: list[Headers] = []
        self._o_records: list[Record] = []
        # the common case: one output and a handler that returns a value
        self._sole_output = (self.output_streams[spec.outputs[0]] if len(spec.outputs) == 1
                             else None)
        self._sole_codec = self._out_codecs[spec.outputs[0]] if len(spec.outputs) == 1 else None
        self._sole_stamp = (self._stamps.get(spec.outputs[0]) if len(spec.outputs) == 1
                            else None)
        # the inline path of _process_batch: a plain handler with one pydantic-model output
        self._fast = (not spec.takes_context and not spec.stateful and not spec.exactly_once
                      and isinstance(self._sole_codec, ModelCodec))
        self._fast_output: tuple[Any, str, Headers, Callable[[Any], bytes]] = (
            (self._sole_codec.model, self._sole_output or "",
             self._sole_codec.headers if self._sole_stamp is None
             else (*self._sole_codec.headers, self._sole_stamp),
             self._sole_codec.model.__pydantic_serializer__.to_json)
            if isinstance(self._sole_codec, ModelCodec) else (_NoModel, "", (), bytes))
        if spec.exactly_once and not isinstance(streams, SupportsTransactions):
            raise InvalidRequestError(
                f"service {service!r} asks for exactly_once, but the streams backend "
                f"{streams.url} has no transactions; run it at-least-once or on a backend "
                "that supports them"
            )

    # -- public -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the record in hand, commit and return (any thread)."""
        self._stopping = True

    def statistics(self) -> Statistics:
        """Counters, the processing-time summary and lag of this run, now."""
        return self.metrics.statistics()

    def prepare(self) -> None:
        """Create the streams the service reads and writes, and the platform's streams."""
        admin = self.streams.admin()
        ensure_platform_streams(admin)
        for name in self.spec.inputs:
            declared = self.app.streams[name]
            admin.ensure_stream(name, declared.partitions, declared.retention)
        for name, actual in self.output_streams.items():
            declared = self.app.streams[name]
            admin.ensure_stream(actual, declared.partitions, declared.retention)
        admin.ensure_stream(self.retry_stream, 1)

    def run(self, until: Callable[[ServiceRunner], bool] | None = None) -> None:
        """Process records until ``stop()`` is called (or ``until(self)`` is true after a
        batch), then shut down cleanly."""
        self.prepare()
        spec = self.spec
        if spec.on_start is not None:
            spec.on_start(self.ctx)
        self._running = True
        try:  # from here on, on_stop runs and what was opened is closed, whatever happens
            self._producer = self.streams.open_producer()
            consumer = self._consumer = self.streams.open_consumer(self.group)
            if spec.exactly_once:
                assert isinstance(self.streams, SupportsTransactions)
                # stable per instance slot: a restarted instance fences its dead predecessor
                # and aborts its open transaction at once, instead of readers waiting for it
                # to expire
                self._txn = self.streams.open_transactional_producer(
                    f"{self.group}.{self.instance}")
            consumer.subscribe([*spec.inputs, self.retry_stream],
                               on_assign=self._on_assign, on_revoke=self._on_revoke)
            now = self.clock.monotonic()
            next_commit = now + spec.commit_interval
            next_metrics = now + self._metrics_interval
            next_checkpoint = now + spec.checkpoint_interval
            while not self._stopping:
                records = consumer.poll(max_records=spec.max_batch, timeout=self._poll_timeout)
                if records:
                    self._process_batch(records)
                now = self.clock.monotonic()
                if self._checkpoints is not None and not spec.exactly_once and (
                        now >= next_checkpoint
                        or self._since_checkpoint >= spec.checkpoint_records):
                    self._checkpoint_all()
                    next_checkpoint = now + spec.checkpoint_interval
                    next_commit = now + spec.commit_interval
                elif now >= next_commit:
                    self._commit()
                    next_commit = now + spec.commit_interval
                if self._plumbing and now >= next_metrics:
                    self._emit_metrics(final=False)
                    next_metrics = now + self._metrics_interval
                if until is not None and until(self):
                    break
            self._shutdown()
        finally:
            self._running = False
            try:
                if spec.on_stop is not None:
                    spec.on_stop(self.ctx)
            finally:
                self._close()

    # -- processing -------------------------------------------------------------------------

    def _process_batch(self, records: list[Record]) -> None:
        done = self._done
        process = self._process
        timing = self._plumbing
        clock = time.perf_counter_ns
        durations: list[int] = []
        lap = durations.append
        handled = 0
        # the common shape — no context, no state, one typed output — runs inline: the same
        # steps as _process, without its generality
        fast = self._fast
        in_codecs = self._in_codecs
        handler = self.spec.handler
        out_model, sole, out_headers, to_json = self._fast_output
        o_streams, o_keys, o_values = self._o_streams, self._o_keys, self._o_values
        o_headers, o_records = self._o_headers, self._o_records
        # Timing every record costs two clock readings and a histogram entry (~0.3 µs): for
        # records that take longer than SAMPLE_BELOW_NS each one is timed; faster ones are
        # timed one in SAMPLE_STRIDE, each sample standing for that many records.
        stride = self._stride if timing else 0
        batch_start = clock() if timing else 0
        t0 = now = 0
        # Slow records (timed one by one): their outputs and offsets are committed every
        # commit interval inside the batch too, so a record that is done does not wait for
        # the rest of its batch (and is not redone after a crash). Not in a transaction.
        eager = timing and stride == 1 and self._txn is None
        commit_ns = int(self.spec.commit_interval * 1e9)
        last_commit = batch_start
        for record in records:
            if self._stopping:
                break
            sampled = timing and handled % stride == 0
            if sampled:
                t0 = clock()
            try:
                codec = in_codecs.get(record.stream) if fast else None
                if codec is None:
                    process(record)
                else:
                    failure: Exception | None = None
                    try:
                        value = codec.decode(record.value, record.headers)
                    except Exception as exc:  # any decoding failure: to the exceptions stream
                        self._failed(record, "decode", exc, 1, None)
                        value = result = None
                    else:
                        try:
                            result = handler(value)
                        except Exception as exc:
                            failure, result = exc, None
                    if type(result) is out_model:
                        o_streams.append(sole)
                        o_keys.append(record.key)
                        o_values.append(to_json(result))
                        o_headers.append(out_headers)
                        o_records.append(record)
                    elif failure is not None:  # retried by the general path (outside the
                        # except block, so a retry's error does not chain to this one)
                        self._handle(record, value, None, None, first_error=failure)
                    elif result is not None:
                        self._handle(record, value, None, None, first_result=result)
            except _Interrupted:
                break
            if sampled:
                now = clock()
                lap(now - t0)
            handled += 1
            done[record.stream, record.partition] = record.offset + 1
            if eager and now - last_commit >= commit_ns:
                self._commit()  # sends the outputs: it hands out fresh output columns
                o_streams, o_keys, o_values = self._o_streams, self._o_keys, self._o_values
                o_headers, o_records = self._o_headers, self._o_records
                last_commit = clock()
        if timing and handled:
            self.metrics.record_batch(durations, stride, handled)
            per_record = (clock() - batch_start) // handled
            self._stride = 1 if per_record >= SAMPLE_BELOW_NS else SAMPLE_STRIDE
        self._since_checkpoint += handled
        self._send_outputs()
        fault_point("service.batch.after_send")

    def _process(self, record: Record) -> None:
        stream = record.stream
        codec = self._in_codecs.get(stream)
        replay_of: int | None = None
        shard_number = record.partition
        if codec is None:  # from the retry stream
            try:
                stream, replay_of, shard_number = self._replayed(record)
            except (InvalidRequestError, ValueError) as exc:
                self._failed(record, "decode", exc, 1, None)
                return
            codec = self._in_codecs[stream]
        try:
            value = codec.decode(record.value, record.headers)
        except Exception as exc:  # any decoding failure: to the exceptions stream
            self._failed(record, "decode", exc, 1, replay_of)
            return
        shard = None
        if self._checkpoints is not None:
            shard = self._shards.get(shard_number)
            if shard is None:
                self._failed(record, "state", InvalidRequestError(
                    f"this instance does not hold the state of partition {shard_number}; "
                    "replay it again when the service runs with one instance, or reset the "
                    "group"), 1, replay_of)
                return
        self._handle(record, value, shard, replay_of)

    def _handle(self, record: Record, value: Any, shard: Shard | None, replay_of: int | None,
                *, first_error: Exception | None = None, first_result: Any = None) -> None:
        """Run the handler with retries; collect its outputs. ``first_error`` or
        ``first_result`` hand over an attempt already made (by the inline path)."""
        ctx = self.ctx
        handler = self.spec.handler
        takes_ctx = self.spec.takes_context
        policy = self.spec.retry
        attempt = 1
        while True:
            if takes_ctx:
                ctx._begin(record, shard, attempt)
            if shard is not None:
                shard.begin()
            try:
                if first_error is not None:
                    error, first_error = first_error, None
                    raise error
                if first_result is not None:
                    result, first_result = first_result, None
                    self._collect(record, result, None)
                elif takes_ctx:
                    self._collect(record, handler(value, ctx), ctx.emitted)
                else:
                    self._collect(record, handler(value), None)
                if shard is not None:
                    shard.keep()
            except _EncodeError as exc:
                if shard is not None:
                    shard.drop()
                self._failed(record, "encode", exc.__cause__ or exc, attempt, replay_of)
                return
            except Exception as exc:  # the handler's failure: retry, then give up loudly
                if shard is not None:
                    shard.drop()
                if self._plumbing:
                    self.metrics.errors += 1
                if attempt >= policy.attempts or self._stopping:
                    if self._stopping and attempt < policy.attempts:
                        raise _Interrupted() from exc
                    self._failed(record, "handle", exc, attempt, replay_of)
                    return
                attempt += 1
                self.metrics.retries += 1
                log.info("service %s: %s at %s/%d@%d, attempt %d of %d in %.3f s",
                         self.spec.name, type(exc).__name__, record.stream, record.partition,
                         record.offset, attempt, policy.attempts, policy.delay_s(attempt))
                self.clock.sleep(policy.delay_s(attempt))
                continue
            # the attempt succeeded: what it reported (ctx.report) is recorded — outside the
            # retry, so a failure to send it never runs the handler (and its outputs) again
            if takes_ctx:
                for reported in ctx.reported:
                    self._failed(record, "reported", reported, attempt, replay_of)
            return

    def _replayed(self, record: Record) -> tuple[str, int | None, int]:
        original = header(record.headers, REPLAY_STREAM_HEADER)
        if original not in self._in_codecs:
            raise InvalidRequestError(
                f"record {record.position} on {self.retry_stream} names input stream "
                f"{original!r}, which service {self.spec.name!r} does not read"
            )
        of = header(record.headers, REPLAY_HEADER)
        part = header(record.headers, REPLAY_PARTITION_HEADER)
        return original, int(of) if of else None, int(part) if part else 0

    def _collect(self, record: Record, result: Any, emitted: list[Emit] | None) -> None:
        sole = self._sole_output
        if (sole is not None and not emitted and result is not None
                and not isinstance(result, list | tuple | GeneratorType)):
            # the common case, kept short: one value for the only output
            assert self._sole_codec is not None
            try:
                data, headers = self._sole_codec.encode(result)
            except Exception as exc:
                raise _EncodeError(str(exc)) from exc
            if self._sole_stamp is not None:
                headers = (*headers, self._sole_stamp)
            self._o_streams.append(sole)
            self._o_keys.append(record.key)
            self._o_values.append(data)
            self._o_headers.append(headers)
            self._o_records.append(record)
            return
        items: Iterable[Any]
        if result is None:
            items = ()
        elif isinstance(result, Emit):  # before tuple: Emit is a NamedTuple
            items = (result,)
        elif isinstance(result, list | tuple | GeneratorType):
            items = result
        else:
            items = (result,)
        pending = [self._encode(record, item) for item in (*(emitted or ()), *items)]
        for stream, key, value, headers in pending:
            self._o_streams.append(stream)
            self._o_keys.append(key)
            self._o_values.append(value)
            self._o_headers.append(headers)
            self._o_records.append(record)

    def _encode(self, record: Record, item: Any) -> tuple[str, bytes | None, bytes | None,
                                                           Headers]:
        if isinstance(item, Emit):
            declared, value, key = item.stream, item.value, item.key
            if declared not in self.output_streams:
                raise InvalidRequestError(
                    f"service {self.spec.name!r} emitted to {declared!r}, which is not one of "
                    f"its outputs ({', '.join(self.spec.outputs) or 'none'}); declare it"
                )
        else:
            if len(self.spec.outputs) != 1:
                raise InvalidRequestError(
                    f"service {self.spec.name!r} returned a {type(item).__name__} but has "
                    f"{len(self.spec.outputs)} outputs; return Emit(stream, value) instead"
                )
            declared, value, key = self.spec.outputs[0], item, None
        if key is None:
            key = record.key
        elif isinstance(key, str):
            key = key.encode()
        try:
            data, headers = self._out_codecs[declared].encode(value)
        except Exception as exc:
            raise _EncodeError(str(exc)) from exc
        stamp = self._stamps.get(declared)
        if stamp is not None:
            headers = (*headers, stamp)
        return self.output_streams[declared], key, data, headers

    def _emit_now(self, declared: str, value: Any, key: bytes | str | None) -> None:
        """``ctx.emit_now``: encode like any output, send at once, outside the attempt (and
        outside a transaction: with its own producer)."""
        stream, key_bytes, data, headers = self._encode(self.ctx.record,
                                                        Emit(declared, value, key))
        if self._live is None:
            self._live = self.streams.open_producer()
        self._live.send(stream, data, key=key_bytes, headers=headers)

    def _send_outputs(self) -> None:
        if not self._o_values:
            return
        streams, keys, values = self._o_streams, self._o_keys, self._o_values
        headers, records = self._o_headers, self._o_records
        self._o_streams, self._o_keys, self._o_values = [], [], []
        self._o_headers, self._o_records = [], []
        n = len(values)
        if self._txn is not None:
            self._txn_dirty = True
            for i in range(n):
                key = keys[i]
                try:
                    self._txn.send(streams[i], values[i], key=key, headers=headers[i],
                                   partition=None if key is not None else records[i].partition
                                   % self._partitions(streams[i]))
                except RecordTooLargeError as exc:
                    self._failed(records[i], "encode", exc, 1, None)
            self._count_out(n)
            return
        producer = self._producer
        assert producer is not None
        first = streams[0]
        try:
            if streams.count(first) == n:
                producer.send_batch(first, values, keys=keys, headers=headers)
            else:
                for name in dict.fromkeys(streams):
                    chosen = [i for i in range(n) if streams[i] == name]
                    producer.send_batch(name, [values[i] for i in chosen],
                                        keys=[keys[i] for i in chosen],
                                        headers=[headers[i] for i in chosen])
        except RecordTooLargeError:
            # one output is too large: send the rest one by one, and report that one's input
            sent = 0
            for i in range(n):
                try:
                    producer.send(streams[i], values[i], key=keys[i], headers=headers[i])
                    sent += 1
                except RecordTooLargeError as exc:
                    self._failed(records[i], "encode", exc, 1, None)
            self._count_out(sent)
            return
        self._count_out(n)

    def _count_out(self, n: int) -> None:
        self.metrics.records_out += n

    def _partitions(self, stream: str) -> int:
        declared = next((d for d, a in self.output_streams.items() if a == stream), stream)
        spec = self.app.streams.get(declared)
        return spec.partitions if spec is not None else 1

    def _failed(self, record: Record, stage: str, error: BaseException, attempts: int,
                replay_of: int | None) -> None:
        self.metrics.exceptions += 1
        if stage == "reported":  # handled by design: an exception record, not an error
            log.info("service %s reported %s/%d@%d: %s: %s", self.spec.name, record.stream,
                     record.partition, record.offset, type(error).__name__, error)
        else:
            if stage != "handle":
                self.metrics.errors += 1
            log.warning("service %s gave up on %s/%d@%d after %d attempt(s) (%s): %s: %s",
                        self.spec.name, record.stream, record.partition, record.offset,
                        attempts, stage, type(error).__name__, error)
        doc = describe_failure(self._identity, record, stage, error, attempts, replay_of,
                               int(self.clock.time() * 1000))
        key = self.group.encode()
        if self._txn is not None:
            self._txn_dirty = True
            self._txn.send(EXCEPTIONS, doc, key=key)
        else:
            assert self._producer is not None
            self._producer.send(EXCEPTIONS, doc, key=key)

    # -- commits, checkpoints, metrics -----------------------------------------------------

    def _offsets(self, keys: Iterable[tuple[str, int]] | None = None) -> dict[StreamPartition,
                                                                                int]:
        done = self._done
        chosen = done if keys is None else {k: done[k] for k in keys if k in done}
        return {StreamPartition(s, p): o for (s, p), o in chosen.items()}

    def _commit(self, only: set[StreamPartition] | None = None) -> None:
        """Make outputs durable, then commit the input offsets they came from."""
        if self._txn is not None:
            self._commit_transaction(only)
            return
        assert self._producer is not None
        self._send_outputs()
        offsets = self._offsets()
        if self._checkpoints is not None:
            # a stateful service's input offsets move only with its checkpoints
            offsets = {sp: o for sp, o in offsets.items() if sp.stream == self.retry_stream}
        if only is not None:
            offsets = {sp: o for sp, o in offsets.items() if sp in only}
        self._producer.flush()
        if self._checkpoints is None:  # a stateful service's state may refer to them too:
            self._release_pins()       # its pins go with its checkpoints
        offsets = {sp: o for sp, o in offsets.items() if self._committed_at.get(sp) != o}
        if not offsets:
            return
        fault_point("service.commit.after_flush")
        try:
            self._consumer.commit(offsets)
            self._committed_at.update(offsets)
        except FencedError as exc:
            log.warning("service %s: %s (the records will be processed again by their new "
                        "owner)", self.spec.name, exc)
        fault_point("service.commit.after_commit")

    def _commit_transaction(self, only: set[StreamPartition] | None) -> None:
        assert self._txn is not None
        self._send_outputs()
        written: list[tuple[int, dict[str, int], Shard]] = []
        if self._checkpoints is not None:
            # every shard whose offsets moved gets a checkpoint in the same transaction, so
            # on restart state and committed offsets agree exactly
            for number, shard in self._shards.items():
                if only is not None and not any(sp.partition == number for sp in only):
                    continue
                moved = self._shard_offsets(number)
                latest = self._checkpoints.latest(number)
                if shard.changed or (latest.offsets if latest else {}) != moved:
                    self._txn.send(CHECKPOINTS, self._checkpoints.encode(
                        number, moved, shard.data, self._since_checkpoint),
                        key=self._checkpoints.key(number))
                    written.append((number, moved, shard))
        offsets = self._offsets()
        if only is not None:
            offsets = {sp: o for sp, o in offsets.items() if sp in only}
        offsets = {sp: o for sp, o in offsets.items() if self._committed_at.get(sp) != o}
        everything = only is None or self._checkpoints is None  # every shard's state is stored
        if not offsets and not written and not self._txn_dirty:
            if everything:
                self._release_pins()
            return
        fault_point("service.transaction.before_commit")
        self._txn.commit(self._consumer, offsets)
        self._txn_dirty = False
        if everything:
            self._release_pins()
        self._committed_at.update(offsets)
        if self._checkpoints is not None:
            for number, shard_offsets, shard in written:
                self._checkpoints.remember(number, shard_offsets, shard.data, 0)
                shard.changed = False
            self._since_checkpoint = 0
        fault_point("service.transaction.after_commit")

    def _release_pins(self) -> None:
        """Every output so far is durable: drop the pins of the objects they refer to."""
        if self._pins is None or not self._pins.holding:
            return
        if self._live is not None:  # ctx.emit_now's records may refer to them too
            self._live.flush()
        self._pins.release()

    def _shard_offsets(self, number: int) -> dict[str, int]:
        return {s: self._done[s, number] for s in self.spec.inputs if (s, number) in self._done}

    def _checkpoint_all(self, numbers: Iterable[int] | None = None) -> None:
        """Flush outputs, write checkpoints of changed shards, then commit their offsets."""
        assert self._checkpoints is not None and self._producer is not None
        self._send_outputs()
        self._producer.flush()
        fault_point("service.checkpoint.before_write")
        chosen = list(self._shards) if numbers is None else [n for n in numbers
                                                             if n in self._shards]
        commit: dict[StreamPartition, int] = {}
        for number in chosen:
            shard = self._shards[number]
            offsets = self._shard_offsets(number)
            latest = self._checkpoints.latest(number)
            if not shard.changed and latest is not None and latest.offsets == offsets:
                continue
            self._checkpoints.write(self._producer, number, offsets, shard.data,
                                    self._since_checkpoint)
            shard.changed = False
            commit.update({StreamPartition(s, number): o for s, o in offsets.items()})
        if numbers is None:  # outputs and every shard's state are durable
            self._release_pins()
        fault_point("service.checkpoint.after_write")
        self._since_checkpoint = 0
        commit.update({sp: o for sp, o in self._offsets().items()
                       if sp.stream == self.retry_stream})
        commit = {sp: o for sp, o in commit.items() if self._committed_at.get(sp) != o}
        if commit:
            try:
                self._consumer.commit(commit)
                self._committed_at.update(commit)
            except FencedError as exc:
                log.warning("service %s: %s", self.spec.name, exc)

    def _emit_metrics(self, *, final: bool) -> None:
        consumer = self._consumer
        try:
            self.metrics.lag = dict(consumer.lag())
            self.metrics.assigned = list(consumer.assignment())
        except Exception as exc:  # lag is best effort; the record still goes out
            log.debug("lag unavailable: %s", exc)
        doc = self.metrics.snapshot(final=final)
        assert self._producer is not None
        self._producer.send(METRICS, json.dumps(doc, separators=(",", ":")).encode(),
                            key=self.group.encode())

    # -- rebalancing ------------------------------------------------------------------------

    def _on_revoke(self, partitions: list[StreamPartition]) -> None:
        gone = {sp for sp in partitions}
        self.metrics.assigned = [sp for sp in self.metrics.assigned if sp not in gone]
        if self._checkpoints is not None and not self.spec.exactly_once:
            numbers = {sp.partition for sp in gone if sp.stream in self._in_codecs}
            self._checkpoint_all(numbers)
            self._commit(gone)
            for number in numbers:
                self._shards.pop(number, None)
        else:
            self._commit(gone)
            if self._checkpoints is not None:
                for number in {sp.partition for sp in gone if sp.stream in self._in_codecs}:
                    self._shards.pop(number, None)
        for sp in gone:
            self._done.pop((sp.stream, sp.partition), None)
            self._committed_at.pop(sp, None)

    def _on_assign(self, partitions: list[StreamPartition]) -> None:
        # statistics() shows the assignment at once, not only from the next metrics record
        self.metrics.assigned = [*self.metrics.assigned,
                                 *(sp for sp in partitions if sp not in self.metrics.assigned)]
        if self._checkpoints is None:
            return
        self._checkpoints.refresh()
        numbers = sorted({sp.partition for sp in partitions if sp.stream in self._in_codecs})
        for number in numbers:
            latest = self._checkpoints.latest(number)
            self._shards[number] = Shard(dict(latest.state) if latest else {})
            if latest is None:
                continue
            for sp in partitions:
                if sp.partition == number and sp.stream in latest.offsets:
                    self._consumer.seek(sp, latest.offsets[sp.stream])
                    self._done[sp.stream, number] = latest.offsets[sp.stream]

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._checkpoints is not None and not self.spec.exactly_once:
            self._checkpoint_all()
        self._commit()
        if self._plumbing:
            self._emit_metrics(final=True)
        if self._producer is not None:
            self._producer.flush()
        if self._live is not None:
            self._live.flush()

    def _close(self) -> None:
        for closer in (self._consumer, self._txn, self._producer, self._live):
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
        self._consumer = self._producer = self._txn = self._live = None


class _NoModel:
    """Matches no handler result (the inline path is off)."""


class _Interrupted(Exception):
    """Stop was requested while a record was being retried: leave it for the next run."""
