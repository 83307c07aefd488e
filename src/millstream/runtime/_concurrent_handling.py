"""The path one input record takes through an ``async def`` handler: decode, await the
handler (retried per the service's ``RetryPolicy``, waiting with ``asyncio.sleep`` so other
records go on), encode what it returned — or report it.

It is the asynchronous twin of ``_handling.RecordHandler.handle``, with one difference that
follows from running many records at once: nothing it produces goes out directly. Each
record's output rows and exception records are kept on its ``InFlight`` entry, which the
scheduler (``_concurrent``) releases in offset order once every record before it on its
partition has finished — so outputs, exception records and committed offsets stay exactly
as a one-at-a-time run would leave them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

from millstream.codecs import Codec
from millstream.errors import InvalidRequestError
from millstream.records import Record
from millstream.runtime._clock import Clock
from millstream.runtime._handling import (
    Interrupted,
    RecordHandler,
    replay_origin,
    retry_delay,
)
from millstream.runtime._metrics import Metrics
from millstream.runtime._outputs import EncodeError, Encoder, Outputs, Row
from millstream.runtime._state import ServiceState, Shard
from millstream.service._app import App, ServiceSpec
from millstream.service._context import Context
from millstream.service._files import ServiceFiles

__all__ = ["AsyncRecordHandler", "InFlight"]

log = logging.getLogger(__name__)


class InFlight:
    """One input record taken by an async service, from poll until it is released."""

    __slots__ = ("done", "exceptions", "files", "key", "record", "retrying", "rows",
                 "started_ns", "task")

    def __init__(self, record: Record) -> None:
        self.record = record
        #: what orders it: its key; a keyless record is its own key (None never matches)
        self.key = record.key
        self.done = False
        self.rows: list[Row] = []
        #: exception records (value, key) for the exceptions stream
        self.exceptions: list[tuple[bytes, bytes]] = []
        self.started_ns = 0
        self.retrying = False  # waiting between attempts (a stop cancels the wait)
        self.task: asyncio.Task[None] | None = None
        #: its own ``ctx.files``, whose pins wait for its outputs to be handed over
        self.files: ServiceFiles | None = None

    def handed_over(self) -> None:
        """Its outputs went to the producer, or never will: its objects' pins may go."""
        if self.files is not None:
            self.files.sent()


class AsyncRecordHandler:
    """Handles one record of an async service, given as an ``InFlight`` entry."""

    def __init__(self, app: App, spec: ServiceSpec, *, encoder: Encoder,
                 state: ServiceState | None, ctx: Context | None, metrics: Metrics,
                 plumbing: bool, retry_stream: str, function: Callable[[], Callable[..., Any]],
                 emit_now: Callable[..., None],
                 stopping: Callable[[], bool], clock: Clock) -> None:
        self._spec = spec
        self._codecs: dict[str, Codec[Any]] = {s: app.streams[s].codec for s in spec.inputs}
        self._encoder = encoder
        self._shards = state.shards if state is not None else None
        self._ctx = ctx  # the template each record's own context is copied from
        self._metrics = metrics
        self._plumbing = plumbing
        self._retry_stream = retry_stream
        self._function = function  # the handler, with the lifespan's resource once given
        self._emit_now = emit_now
        self._stopping = stopping
        self._reporting: InFlight | None = None
        # reports go through the sync path's ``report`` (same document, log line and
        # counters), into the entry being reported instead of straight to the stream
        self._reporter = RecordHandler(
            app, spec, encoder=encoder, outputs=Outputs(), state=None, ctx=None,
            metrics=metrics, clock=clock, plumbing=plumbing, retry_stream=retry_stream,
            send_exception=self._keep_exception, stopping=stopping)

    def _keep_exception(self, value: bytes, key: bytes) -> None:
        assert self._reporting is not None
        self._reporting.exceptions.append((value, key))

    def _report(self, entry: InFlight, stage: str, error: BaseException, attempts: int,
                replay_of: int | None) -> None:
        self._reporting = entry
        try:
            self._reporter.report(entry.record, stage, error, attempts, replay_of)
        finally:
            self._reporting = None

    def _context(self, entry: InFlight) -> Context | None:
        """A context of the record's own: records in flight together each see theirs."""
        template = self._ctx
        if template is None:
            return None
        record = entry.record
        ctx = copy.copy(template)
        ctx.reported = []
        if template._files is not None:
            ctx._files = entry.files = template._files.for_record()
        emit_now = self._emit_now
        ctx._emit_now = lambda declared, value, key: emit_now(declared, value, key, record)
        return ctx

    async def handle(self, entry: InFlight) -> None:
        """Run ``entry``'s record to the end: its rows and exception records are on the entry
        when this returns; raises ``Interrupted`` if the service stopped while it waited to
        be retried (it is left for the next run)."""
        record = entry.record
        codec = self._codecs.get(record.stream)
        replay_of: int | None = None
        number = record.partition
        if codec is None:  # from the retry stream
            try:
                stream, replay_of, number = self._replayed(record)
            except (InvalidRequestError, ValueError) as exc:
                self._report(entry, "decode", exc, 1, None)
                return
            codec = self._codecs[stream]
        try:
            value = codec.decode(record.value, record.headers)
        except Exception as exc:  # any decoding failure: to the exceptions stream
            self._report(entry, "decode", exc, 1, replay_of)
            return
        shard: Shard | None = None
        if self._shards is not None:
            shard = self._shards.get(number)
            if shard is None:
                self._report(entry, "state", InvalidRequestError(
                    f"this instance does not hold the state of partition {number}; replay "
                    "it again when the service runs with one instance, or reset the group"),
                    1, replay_of)
                return
        ctx = self._context(entry)
        handler, encoder = self._function(), self._encoder
        attempt = 1
        while True:
            if ctx is not None:
                ctx._begin(record, shard, attempt)
            if shard is not None:
                shard.begin()
            rows: list[Row] = []
            try:
                result = await (handler(value) if ctx is None else handler(value, ctx))
                emitted = None if ctx is None else ctx.emitted
                if type(result) is encoder.model and not emitted:  # the common shape
                    try:
                        data = encoder.to_json(result)
                    except Exception as exc:
                        raise EncodeError(str(exc)) from exc
                    key = (record.key if encoder.sole_key is None
                           else encoder.sole_key(result, data, record.key))
                    rows.append((encoder.sole, key, data, encoder.sole_headers, record))
                elif result is not None or emitted:
                    encoder.collect(rows, record, result, emitted)
                if shard is not None:
                    shard.keep()
            except EncodeError as exc:
                if shard is not None:
                    shard.drop()
                self._report(entry, "encode", exc.__cause__ or exc, attempt, replay_of)
                return
            except (Exception, asyncio.CancelledError) as exc:
                # the handler's failure: retry, then give up loudly — unless this record's
                # task is being cancelled (the service closes after a failure)
                if shard is not None:
                    shard.drop()
                task = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and task and task.cancelling():
                    raise
                if not await self._again(entry, exc, attempt, replay_of):
                    return
                attempt += 1
                continue
            entry.rows = rows
            if ctx is not None:  # what the successful attempt reported is recorded
                for reported in ctx.reported:
                    self._report(entry, "reported", reported, attempt, replay_of)
            return

    async def _again(self, entry: InFlight, error: BaseException, attempt: int,
                     replay_of: int | None) -> bool:
        """After failed ``attempt``: wait (letting other records run) and say True to try
        again, or give up (False)."""
        delay = retry_delay(self._spec, self._metrics, self._plumbing, self._stopping(),
                            entry.record, error, attempt)
        if delay is None:
            self._report(entry, "handle", error, attempt, replay_of)
            return False
        entry.retrying = True
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:  # the service stops: leave it for the next run
            raise Interrupted() from error
        finally:
            entry.retrying = False
        return True

    def _replayed(self, record: Record) -> tuple[str, int | None, int]:
        return replay_origin(record, self._codecs, self._retry_stream, self._spec.name)
