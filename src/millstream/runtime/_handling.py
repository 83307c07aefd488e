"""The one path every input record takes: decode, handle (with retries), encode — or report.

``RecordHandler.handle(record)`` decodes the record with its stream's codec (a record from
the service's retry stream with the codec of the stream it was replayed from), gives a
stateful handler its partition's shard, runs the handler per the service's ``RetryPolicy``
(each attempt's state changes and ``ctx.emit`` outputs are kept only if it succeeds), and
appends what it returned to the outputs as encoded rows; ``bind(batch)`` gives the same path
over a poll's ``RecordBatch`` by index, reading its columns where nothing can go wrong. A
record that cannot be decoded, whose handler keeps failing, or whose output cannot be encoded
goes to the exceptions stream (``report``) and processing continues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from millstream._wellknown import REPLAY_HEADER
from millstream.codecs import Codec, header
from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.runtime._clock import Clock
from millstream.runtime._failures import describe_failure
from millstream.runtime._metrics import Metrics
from millstream.runtime._outputs import EncodeError, Encoder, Outputs
from millstream.runtime._state import ServiceState, Shard
from millstream.service._app import App, ServiceSpec
from millstream.service._context import Context
from millstream.streams._base import RecordBatch

__all__ = ["REPLAY_PARTITION_HEADER", "REPLAY_STREAM_HEADER", "Interrupted", "RecordHandler",
           "replay_origin", "retry_delay"]

log = logging.getLogger(__name__)

#: Header on a replayed record: the input stream it originally came from.
REPLAY_STREAM_HEADER = "millstream-replay-stream"
#: Header on a replayed record: its original partition (the state shard it belongs to).
REPLAY_PARTITION_HEADER = "millstream-replay-partition"


#: stages of records handled by design (``ctx.report``, a window's or a join's late record,
#: an inner join's unmatched record it was asked to report): logged at info, not counted as
#: errors
_BY_DESIGN = frozenset({"reported", "late", "join"})


class Interrupted(Exception):
    """Stop was requested while a record was being retried: leave it for the next run."""

def retry_delay(spec: ServiceSpec, metrics: Metrics, plumbing: bool, stopping: bool,
                record: Record, error: BaseException, attempt: int) -> float | None:
    """After failed ``attempt`` of ``record``: the seconds to wait before the next attempt
    (counted as a retry), or None to give up and report it; raises ``Interrupted`` when the
    service stops before the attempts are used up (the record is left for the next run)."""
    policy = spec.retry
    if plumbing:
        metrics.errors += 1
    if attempt >= policy.attempts or stopping:
        if stopping and attempt < policy.attempts:
            raise Interrupted() from error
        return None
    metrics.retries += 1
    delay = policy.delay_s(attempt + 1)
    log.info("service %s: %s at %s/%d@%d, attempt %d of %d in %.3f s", spec.name,
             type(error).__name__, record.stream, record.partition, record.offset,
             attempt + 1, policy.attempts, delay)
    return delay


def replay_origin(record: Record, codecs: Mapping[str, Codec[Any]], retry_stream: str,
                  service: str) -> tuple[str, int | None, int]:
    """A record from the retry stream: the input stream it was replayed from, its original
    offset (None if not given) and its original partition (the state shard it belongs to)."""
    original = header(record.headers, REPLAY_STREAM_HEADER)
    if original is None or original not in codecs:
        raise InvalidRequestError(
            f"record {record.position} on {retry_stream} names input stream "
            f"{original!r}, which service {service!r} does not read"
        )
    of = header(record.headers, REPLAY_HEADER)
    part = header(record.headers, REPLAY_PARTITION_HEADER)
    return original, int(of) if of else None, int(part) if part else 0



class RecordHandler:
    """Handles one service's input records, one at a time, on the runner's thread."""

    def __init__(self, app: App, spec: ServiceSpec, *, encoder: Encoder, outputs: Outputs,
                 state: ServiceState | None, ctx: Context | None, metrics: Metrics,
                 clock: Clock, plumbing: bool, retry_stream: str,
                 send_exception: Callable[[bytes, bytes], None],
                 stopping: Callable[[], bool]) -> None:
        self._spec = spec
        self._codecs: dict[str, Codec[Any]] = {s: app.streams[s].codec for s in spec.inputs}
        self._encoder = encoder
        self._outputs = outputs
        self._state = state
        self._ctx = ctx  # None unless the handler takes the context
        #: what is called with (value) or (value, ctx): the handler (see ``give``)
        self.function: Callable[..., Any] = spec.handler
        self._metrics = metrics
        self._identity = dict(metrics.identity)
        self._key = metrics.identity["group"].encode()  # exception records go by group
        self._clock = clock
        self._plumbing = plumbing
        self._retry_stream = retry_stream
        self._send_exception = send_exception
        self._stopping = stopping
        #: ``handle(record)``: decode ``record``, run the handler on it and collect what it
        #: returned as output rows, or report it; raises ``Interrupted`` if a stop came while
        #: it was retried
        self._attempts: Callable[[Record, Any, Shard | None, int | None, int], None]
        self.handle: Callable[[Record], None] = self._path()

    def give(self, resource: Any) -> None:
        """Call the handler with ``resource`` — what the service's lifespan opened — as its
        third argument from now on."""
        handler = self._spec.handler
        self.function = lambda value, ctx: handler(value, ctx, resource)
        self.handle = self._path()

    def _path(self) -> Callable[[Record], None]:
        """Build ``handle(record)`` (and ``_attempts``), with everything they read bound once:
        they run for every record, so they look up nothing per record that does not change."""
        codec_for, ctx, handler, encoder = (self._codecs.get, self._ctx, self.function,
                                            self._encoder)
        model, to_json, sole, sole_headers = (encoder.model, encoder.to_json, encoder.sole,
                                              encoder.sole_headers)
        sole_key = encoder.sole_key  # a table's row: its key, checked with its JSON
        shards = self._state.shards if self._state is not None else None
        outputs, collect, report, again = (self._outputs, encoder.collect, self.report,
                                           self._again)

        def attempts(record: Record, value: Any, shard: Shard | None, replay_of: int | None,
                     attempt: int) -> None:
            """Run the handler on ``value`` from try ``attempt`` on (retried per the policy)
            and collect its outputs, or report ``record``."""
            while True:
                if ctx is not None:
                    ctx._begin(record, shard, attempt)
                if shard is not None:
                    shard.begin()
                try:
                    result = handler(value) if ctx is None else handler(value, ctx)
                    emitted = None if ctx is None else ctx.emitted
                    if type(result) is model and not emitted:  # the common shape
                        try:
                            data = to_json(result)
                        except Exception as exc:
                            raise EncodeError(str(exc)) from exc
                        key = (record.key if sole_key is None
                               else sole_key(result, data, record.key))
                        outputs.rows.append((sole, key, data, sole_headers, record))
                    elif result is not None or emitted:
                        collect(outputs.rows, record, result, emitted)
                    if shard is not None:
                        shard.keep()
                except EncodeError as exc:
                    if shard is not None:
                        shard.drop()
                    report(record, "encode", exc.__cause__ or exc, attempt, replay_of)
                    return
                except Exception as exc:  # the handler's failure: retry, then give up loudly
                    if shard is not None:
                        shard.drop()
                    if not again(record, exc, attempt, replay_of):
                        return
                    attempt += 1
                    continue
                # the attempt succeeded: what it reported (ctx.report) is recorded — outside
                # the retry, so a failure to send it never runs the handler (and its outputs)
                # again
                if ctx is not None:
                    for reported in ctx.reported:  # a window operator's are stage "late"
                        report(record, getattr(reported, "stage", "reported"), reported,
                               attempt, replay_of)
                return

        def handle(record: Record) -> None:
            codec = codec_for(record.stream)
            replay_of: int | None = None
            number = record.partition
            if codec is None:  # from the retry stream
                try:
                    stream, replay_of, number = self._replayed(record)
                except (InvalidRequestError, ValueError) as exc:
                    report(record, "decode", exc, 1, None)
                    return
                codec = self._codecs[stream]
            try:
                value = codec.decode(record.value, record.headers)
            except Exception as exc:  # any decoding failure: to the exceptions stream
                report(record, "decode", exc, 1, replay_of)
                return
            shard = None
            if shards is not None:
                shard = shards.get(number)
                if shard is None:
                    report(record, "state", InvalidRequestError(
                        f"this instance does not hold the state of partition {number}; "
                        "replay it again when the service runs with one instance, or reset "
                        "the group"), 1, replay_of)
                    return
            attempts(record, value, shard, replay_of, 1)

        self._attempts = attempts
        return handle

    def bind(self, batch: RecordBatch) -> Callable[[int], None]:
        """``handle(i)`` for the records of ``batch``: what ``handle(batch[i])`` does.

        For a handler without context or state, the common case — a record of an input
        stream that decodes, a handler that returns, outputs that encode — reads the batch's
        columns and makes no ``Record``: the output row names its input by index in the batch
        (``Outputs.record``). Anything else (a replayed record, a decoding failure, a handler
        that raises, a result that is not the sole output's type) makes the record and takes
        the path ``handle`` takes, from the point reached; nothing runs twice."""
        general = self.handle
        if self._ctx is not None or self._state is not None:
            return lambda i: general(batch[i])
        self._outputs.batch = batch
        values, keys, headers, streams = (batch.values(), batch.keys(), batch.headers(),
                                          batch.streams())
        codec_for, handler, encoder = self._codecs.get, self.function, self._encoder
        model, to_json, sole, sole_headers, sole_key = (
            encoder.model, encoder.to_json, encoder.sole, encoder.sole_headers,
            encoder.sole_key)
        outputs, collect, report, again, attempts = (
            self._outputs, encoder.collect, self.report, self._again, self._attempts)

        def handle(i: int) -> None:
            codec = codec_for(streams[i])
            if codec is None:  # from the retry stream
                general(batch[i])
                return
            try:
                value = codec.decode(values[i], headers[i])
            except Exception:  # decoding again on the general path reports why
                general(batch[i])
                return
            try:
                result = handler(value)
                if type(result) is model:  # the common shape
                    try:
                        data = to_json(result)
                    except Exception as exc:
                        raise EncodeError(str(exc)) from exc
                    key = keys[i] if sole_key is None else sole_key(result, data, keys[i])
                    outputs.rows.append((sole, key, data, sole_headers, i))
                elif result is not None:
                    collect(outputs.rows, batch[i], result, None)
            except EncodeError as exc:
                report(batch[i], "encode", exc.__cause__ or exc, 1, None)
                return
            except Exception as exc:  # the handler's failure: retried on the general path
                record = batch[i]
                retry = again(record, exc, 1, None)
            else:
                return
            if retry:  # outside the except block: a later failure is not chained to this one
                attempts(record, value, None, None, 2)

        return handle

    def _again(self, record: Record, error: Exception, attempt: int,
               replay_of: int | None) -> bool:
        """After failed ``attempt``: wait and say True to try again, or give up (False)."""
        delay = retry_delay(self._spec, self._metrics, self._plumbing, self._stopping(),
                            record, error, attempt)
        if delay is None:
            self.report(record, "handle", error, attempt, replay_of)
            return False
        self._clock.sleep(delay)
        return True

    def _replayed(self, record: Record) -> tuple[str, int | None, int]:
        return replay_origin(record, self._codecs, self._retry_stream, self._spec.name)

    def report(self, record: Record, stage: str, error: BaseException, attempts: int,
               replay_of: int | None) -> None:
        """Send ``record`` to the exceptions stream: ``stage`` says where it failed."""
        metrics = self._metrics
        metrics.exceptions += 1
        if stage in _BY_DESIGN:  # handled by design: an exception record, not an error
            log.info("service %s reported %s/%d@%d: %s: %s", self._spec.name, record.stream,
                     record.partition, record.offset, type(error).__name__, error)
        else:
            if stage != "handle":
                metrics.errors += 1
            log.warning("service %s gave up on %s/%d@%d after %d attempt(s) (%s): %s: %s",
                        self._spec.name, record.stream, record.partition, record.offset,
                        attempts, stage, type(error).__name__, error)
        doc = describe_failure(self._identity, record, stage, error, attempts, replay_of,
                               int(self._clock.time() * 1000))
        self._send_exception(doc, self._key)
