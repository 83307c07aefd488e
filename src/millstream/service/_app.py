"""Declaring an app: its streams, its services, and what each service reads and writes.

A stream is declared once with its payload type and used by handle; a service is a plain
function decorated with ``@app.service``. It takes the decoded input value (and, if it has a
second parameter, the ``Context``; a third, when the service has a ``lifespan``, gets what
the lifespan opened) and returns nothing, one value, a list of values, or ``Emit`` objects;
values go to the service's only output stream, ``Emit`` names the stream. A plain ``def``
handles one record at a time; an ``async def`` is awaited, up to ``concurrency`` records at
once (in order within a key). Its value parameter's annotation must hold what its inputs
carry: both are checked when it is declared (``_handler``). Everything the runtime needs — group,
codecs, retry policy, state, delivery mode, lifespan — is read from the declaration, so the
same declaration also draws the topology graph.

    app = App("shop")
    orders = app.stream("orders", Order)
    invoices = app.stream("invoices", Invoice)

    @app.service(inputs=[orders], outputs=[invoices])
    def billing(order: Order) -> Invoice:
        return Invoice(order_id=order.id, total=order.total)
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from pydantic import BaseModel

from millstream._names import check_stream_name
from millstream.codecs import Codec, codec_for
from millstream.errors import InvalidRequestError
from millstream.service._guarantees import (
    EXACTLY_ONCE,
    Processing,
    check_guarantees,
    check_processing,
)
from millstream.service._handler import (
    check_concurrency,
    check_handler,
    handler_function,
    is_async_handler,
)
from millstream.service._joins import Joins
from millstream.service._stream import Stream, stream_name
from millstream.service._table_output import TableOutput, table_output
from millstream.service._windowed import declare_windowed
from millstream.service._writer import Writer
from millstream.streams._base import Retention

if TYPE_CHECKING:
    from millstream.files._base import FileStore
    from millstream.service._context import Context
    from millstream.streams._base import Streams as StreamsBackend

__all__ = ["App", "Emit", "Lifespan", "RetryPolicy", "ServiceSpec"]

Payload = Any  # a pydantic model class, bytes, dict (JSON) or a codec object
#: what ``inputs`` and ``outputs`` take: handles, names, or ``{name: payload}`` (and, as
#: outputs, tables)
StreamRefs = (Stream[Any] | str | Iterable[Stream[Any] | str | TableOutput]
           | Mapping[str, Payload])
#: a service's lifespan: given the service's context, a context manager whose value the
#: handler gets as its third argument
Lifespan = Callable[["Context"], AbstractContextManager[Any]]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
V = TypeVar("V")
O = TypeVar("O")  # noqa: E741

#: what a service may be named: it names the group and the retry stream
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class Emit(NamedTuple):
    """One output a handler returns: a value for a stream (a handle or its name).

    ``key`` defaults to the input record's key, so records about one entity keep landing on
    the same partition down the pipeline."""

    stream: Stream[Any] | str
    value: Any
    key: bytes | str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing handler is retried before its record goes to the exceptions stream.

    Attempt ``n`` (from 2) waits ``backoff * multiplier ** (n - 2)`` seconds, capped at
    ``max_backoff`` seconds. ``attempts`` counts the first try: 3 means two retries.
    """

    attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) \
                or self.attempts < 1:
            raise InvalidRequestError(
                f"retry attempts={self.attempts!r} must be an integer ≥ 1 (1 means no retry)"
            )
        for what, seconds in (("backoff", self.backoff), ("max_backoff", self.max_backoff)):
            if not _is_number(seconds) or seconds < 0:
                raise InvalidRequestError(
                    f"retry {what}={seconds!r} must be a number of seconds ≥ 0 "
                    "(e.g. 0.1 for 100 ms)")
        if not _is_number(self.multiplier) or self.multiplier < 1:
            raise InvalidRequestError(
                f"retry multiplier={self.multiplier!r} must be a number ≥ 1")

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...)."""
        delay = self.backoff * self.multiplier ** max(attempt - 2, 0)
        return float(min(delay, self.max_backoff))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_service_name(name: object, *, given: bool) -> str:
    """``name`` if it can name a service (and so its group and retry stream)."""
    if isinstance(name, str) and _SERVICE_NAME.fullmatch(name) and len(name) <= 100:
        return name
    fix = ("choose another" if given
           else "give the service a name: @app.service('my-service', inputs=...)")
    raise InvalidRequestError(
        f"service name {name!r} cannot name a consumer group and its retry stream: use up "
        f"to 100 letters, digits, '_' and '-', starting with a letter or digit; {fix}")


@dataclass(slots=True)
class ServiceSpec:
    """Everything declared about one service."""

    name: str
    handler: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    group: str
    stateful: bool = False
    exactly_once: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    takes_context: bool = False
    uses: tuple[str, ...] = ()
    max_batch: int = 500
    commit_interval: float = 0.2
    checkpoint_interval: float = 5.0
    checkpoint_records: int = 10_000
    description: str = ""
    #: opens what the handler keeps between records (its value is the third argument)
    lifespan: Lifespan | None = None
    #: the tables among its outputs (their changelog streams are in ``outputs``)
    tables: tuple[TableOutput, ...] = ()
    #: the handler is ``async def``: awaited, up to ``concurrency`` records at once
    asynchronous: bool = False
    concurrency: int = 1


class App(Joins):
    """A set of services and the streams between them.

    ``processing`` is the app's processing guarantee, for every service:
    ``"at-least-once"`` (the default; a crash never loses a record, but may make a service
    write some outputs twice) or ``"exactly-once"`` (each service commits its outputs, state
    and input offsets in one transaction; choose it when any service keeps totals or counts,
    and see docs/services.md#delivery). A stateful exactly-once service that reads what an
    at-least-once service writes is refused, naming both. Joins (``join_table``,
    ``join_streams``, ``join_asof``, ``rekey``) come from ``Joins``.
    """

    def __init__(self, name: str, *, partitions: int = 4,
                 claim_check_bytes: int | None = None,
                 processing: Processing = "at-least-once") -> None:
        if not isinstance(name, str) or not name or not name.replace("-", "").replace(
                "_", "").isalnum():
            raise InvalidRequestError(
                f"app name {name!r} must be letters, digits, '-' and '_' (it prefixes group "
                "and stream names)"
            )
        if not isinstance(partitions, int) or partitions < 1:
            raise InvalidRequestError(f"partitions={partitions!r} must be an integer ≥ 1")
        self.name = name
        self.partitions = partitions
        #: the processing guarantee of every service that does not declare its own
        self.processing: Processing = check_processing(processing)
        if claim_check_bytes is not None and (not isinstance(claim_check_bytes, int)
                                              or claim_check_bytes < 1):
            raise InvalidRequestError(
                f"claim_check_bytes={claim_check_bytes!r} must be a positive integer or None")
        #: values larger than this go to the file store, a reference travels instead
        self.claim_check_bytes = claim_check_bytes
        #: the declared streams by name
        self.streams: dict[str, Stream[Any]] = {}
        self.services: dict[str, ServiceSpec] = {}
        self.tables: dict[str, TableOutput] = {}

    # -- streams ----------------------------------------------------------------------------

    @overload
    def stream(self, name: str, payload: type[M], *, partitions: int | None = None,
               retention: Retention | None = None) -> Stream[M]: ...

    @overload
    def stream(self, name: str, payload: type[bytes] = ..., *, partitions: int | None = None,
               retention: Retention | None = None) -> Stream[bytes]: ...

    @overload
    def stream(self, name: str, payload: type[dict[Any, Any]], *,
               partitions: int | None = None,
               retention: Retention | None = None) -> Stream[dict[str, Any]]: ...

    @overload
    def stream(self, name: str, payload: Codec[T], *, partitions: int | None = None,
               retention: Retention | None = None) -> Stream[T]: ...

    def stream(self, name: str, payload: Payload = bytes, *,
               partitions: int | None = None, retention: Retention | None = None,
               ) -> Stream[Any]:
        """Declare a stream and return its typed handle, to name it by in ``inputs``,
        ``outputs``, ``ctx.emit`` and ``Writer.send``.

        ``payload``: a pydantic model class (JSON with schema headers), ``bytes`` (the
        default) or ``dict`` (JSON), or a codec object. ``partitions`` defaults to the app's;
        ``retention`` is used when the runtime creates the stream (e.g.
        ``Retention(compact=True)`` for a stream that feeds a table).

        Declaring the same stream again returns its handle; with another payload or partition
        count it is an error."""
        check_stream_name(name)
        codec = codec_for(payload)
        count = self.partitions if partitions is None else partitions
        if not isinstance(count, int) or count < 1:
            raise InvalidRequestError(f"stream {name!r}: partitions={count!r} must be ≥ 1")
        existing = self.streams.get(name)
        if existing is not None:
            if existing.codec.description != codec.description:
                raise InvalidRequestError(
                    f"stream {name!r} is already declared with payload "
                    f"{existing.codec.description}; it cannot also carry {codec.description}"
                )
            if partitions is not None and existing.partitions != count:
                raise InvalidRequestError(
                    f"stream {name!r} is already declared with {existing.partitions} "
                    f"partitions, not {count}"
                )
            if retention is not None and existing.retention not in (None, retention):
                raise InvalidRequestError(
                    f"stream {name!r} is already declared with retention "
                    f"{existing.retention.describe() if existing.retention else 'forever'}")
            if retention is not None and existing.retention is None:
                existing = self.streams[name] = Stream(name, existing.codec,
                                                       existing.partitions, retention)
            return existing
        handle: Stream[Any] = Stream(name, codec, count, retention)
        self.streams[name] = handle
        return handle

    def table(self, name: str, model: type[Any], *, key: str | None = None,
              stream: str | None = None, indexes: Iterable[str] = ()) -> TableOutput:
        """Declare table ``name`` of ``model`` rows keyed by field ``key`` (None: by the
        record key), fed from ``stream`` (default: ``name``), with ``indexes``; list what
        it returns in a service's ``outputs`` and the runtime keeps the table fed from what
        the service emits, exactly once (see ``TableOutput``).

        Declaring the same table twice with anything different is an error."""
        declared = table_output(name, model, key=key, stream=stream, indexes=tuple(indexes))
        existing = self.tables.get(name)
        if existing is not None:
            if existing != declared:
                raise InvalidRequestError(
                    f"table {name!r} is already declared as {existing}; it cannot also be "
                    f"{declared}")
            return existing
        self.stream(declared.stream, model)
        self.tables[name] = declared
        return declared

    def _declare(self, streams: StreamRefs | None, what: str,
                 service: str) -> tuple[tuple[str, ...], set[str]]:
        """The names of ``streams``, declared; and which of them were given by handle."""
        if streams is None:
            return (), set()
        if isinstance(streams, str | Stream):
            streams = [streams]
        names: list[str] = []
        handles: set[str] = set()
        if isinstance(streams, Mapping):
            for name, payload in streams.items():
                self.stream(name, payload)
                names.append(name)
        else:
            for item in streams:
                if isinstance(item, TableOutput):
                    if what != "output":
                        raise InvalidRequestError(
                            f"service {service!r} lists table {item.name!r} as an {what}; "
                            f"a table is an output (read its stream {item.stream!r})")
                    if self.tables.get(item.name) != item:
                        raise InvalidRequestError(
                            f"service {service!r} lists table {item.name!r}, which is not "
                            f"this app's; declare it with app.table(...)")
                    names.append(item.stream)
                    continue
                if isinstance(item, Stream):
                    self.stream(item.name, item.codec, partitions=item.partitions,
                                retention=item.retention)
                    handles.add(item.name)
                elif not isinstance(item, str):
                    raise InvalidRequestError(
                        f"service {service!r}: {what} {item!r} is neither a stream handle "
                        "(app.stream(name, Payload)), a table (app.table(...)) nor a stream "
                        "name")
                elif item not in self.streams:
                    self.stream(item, bytes)
                names.append(stream_name(item))
        if len(set(names)) != len(names):
            raise InvalidRequestError(f"service {service!r} lists an {what} stream twice")
        return tuple(names), handles

    # -- services ---------------------------------------------------------------------------

    @overload
    def service(
        self, name: str | None = None, *, inputs: StreamRefs, outputs: StreamRefs | None = None,
        group: str | None = None, stateful: bool = False, exactly_once: bool | None = None,
        retry: RetryPolicy | None = None, uses: Iterable[str] = (), max_batch: int = 500,
        commit_interval: float = 0.2, checkpoint_interval: float = 5.0,
        checkpoint_records: int = 10_000, lifespan: None = None, concurrency: int | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def service(
        self, name: str | None = None, *, inputs: StreamRefs, outputs: StreamRefs | None = None,
        group: str | None = None, stateful: bool = False, exactly_once: bool | None = None,
        retry: RetryPolicy | None = None, uses: Iterable[str] = (), max_batch: int = 500,
        commit_interval: float = 0.2, checkpoint_interval: float = 5.0,
        checkpoint_records: int = 10_000,
        lifespan: Callable[[Context], AbstractContextManager[R]],
        concurrency: int | None = None,
    ) -> Callable[[Callable[[V, Context, R], O]], Callable[[V, Context, R], O]]: ...

    def service(
        self,
        name: str | None = None,
        *,
        inputs: StreamRefs,
        outputs: StreamRefs | None = None,
        group: str | None = None,
        stateful: bool = False,
        exactly_once: bool | None = None,
        retry: RetryPolicy | None = None,
        uses: Iterable[str] = (),
        max_batch: int = 500,
        commit_interval: float = 0.2,
        checkpoint_interval: float = 5.0,
        checkpoint_records: int = 10_000,
        lifespan: Lifespan | None = None,
        concurrency: int | None = None,
    ) -> Callable[[Any], Any]:
        """Declare the decorated function as a service named ``name`` (default: the
        function's name, as written).

        ``inputs``/``outputs``: stream handles (``app.stream(...)``), stream names, or a
        mapping of name to payload type; ``outputs`` may list tables (``app.table(...)``),
        which the runtime feeds. ``group`` defaults to ``<app>.<service>``. ``stateful``
        gives the handler ``ctx.state`` (checkpointed). ``exactly_once`` overrides the app's
        ``processing`` for this service (True: outputs, state and input offsets commit in one
        transaction); a stateful exactly-once service reading what an at-least-once one
        writes is refused. ``uses`` names stores the service touches (``"files"``,
        ``"tables:videos"``), for the topology graph. ``lifespan(ctx)`` returns a context
        manager entered before the first record and exited after the last, also when the
        service fails; what it yields is the handler's third argument. Durations are seconds.
        """

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            target = handler_function(fn)
            if name is None and not hasattr(target, "__name__"):
                raise InvalidRequestError(
                    f"a {type(target).__name__} object has no name to give its service; name "
                    "it: @app.service('my-service', inputs=...)")
            sname = _check_service_name(name if name is not None else target.__name__,
                                        given=name is not None)
            if sname in self.services:
                raise InvalidRequestError(f"app {self.name!r} already has a service {sname!r}")
            ins, by_handle = self._declare(inputs, "input", sname)
            if not ins:
                raise InvalidRequestError(f"service {sname!r} needs at least one input stream")
            outs, _ = self._declare(outputs, "output", sname)
            tables = tuple(t for t in (outputs if isinstance(outputs, Iterable)
                                       and not isinstance(outputs, str | Mapping) else ())
                           if isinstance(t, TableOutput))
            counts = {self.streams[s].partitions for s in ins}
            if stateful and len(counts) > 1:
                raise InvalidRequestError(
                    f"stateful service {sname!r} reads streams with different partition "
                    f"counts ({', '.join(f'{s}={self.streams[s].partitions}' for s in ins)}); "
                    "state is sharded by partition, so its inputs must be co-partitioned"
                )
            for what, count in (("max_batch", max_batch),
                                ("checkpoint_records", checkpoint_records)):
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    raise InvalidRequestError(
                        f"service {sname!r}: {what}={count!r} must be an integer ≥ 1")
            for what, seconds in (("commit_interval", commit_interval),
                                  ("checkpoint_interval", checkpoint_interval)):
                if not _is_number(seconds) or seconds <= 0:
                    raise InvalidRequestError(
                        f"service {sname!r}: {what}={seconds!r} must be a number of seconds "
                        "> 0 (e.g. 0.2 for 200 ms)")
            if lifespan is not None and not callable(lifespan):
                raise InvalidRequestError(
                    f"service {sname!r}: lifespan={lifespan!r} must be a function of the "
                    "service's Context returning a context manager (@contextmanager)")
            takes_context = check_handler(
                fn, sname, {s: self.streams[s].codec for s in ins},
                namespace=sys._getframe(1).f_locals,  # where fn was written: its local names
                by_handle=by_handle, lifespan=lifespan)
            at_once = check_concurrency(fn, sname, concurrency, stateful=stateful)
            if exactly_once not in (None, True, False):
                raise InvalidRequestError(
                    f"service {sname!r}: exactly_once={exactly_once!r} must be True, False "
                    "or None (None: the app's processing guarantee)")
            spec = ServiceSpec(
                name=sname, handler=fn, inputs=ins, outputs=outs,
                group=group or f"{self.name}.{sname}", stateful=stateful,
                exactly_once=(self.processing == EXACTLY_ONCE if exactly_once is None
                              else exactly_once), retry=retry or RetryPolicy(),
                takes_context=takes_context, uses=tuple(uses), max_batch=max_batch,
                commit_interval=float(commit_interval),
                checkpoint_interval=float(checkpoint_interval),
                checkpoint_records=checkpoint_records,
                description=(inspect.getdoc(target) or "").split("\n")[0],
                lifespan=lifespan, tables=tables, asynchronous=is_async_handler(fn),
                concurrency=at_once,
            )
            check_guarantees(self, [spec])
            self.services[sname] = spec
            return fn

        return decorate

    #: ``app.windowed(name, stream, window=..., aggregate=..., ...)``: a windowed service
    #: (``service._windowed.declare_windowed``; the guide is docs/guides/windows.md)
    windowed = declare_windowed

    def open_writer(self, streams: StreamsBackend | str | None = None, *,
                    files: FileStore | None = None, timeout: float = 30.0) -> Writer:
        """A ``Writer`` sending typed records to this app's streams from plain code (a
        script, a backfill): ``streams`` is an open backend or a URL (default: the
        configured one, opened and closed with the writer); ``files`` is needed when the app
        claim-checks large values; each send waits up to ``timeout`` seconds for
        durability. Use it in a ``with`` block."""
        return Writer(self, streams, files=files, timeout=timeout)

    def get(self, service: str) -> ServiceSpec:
        """The service named ``service``; the error lists the ones there are."""
        try:
            return self.services[service]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "(none)"
            alike = [s for s in self.services
                     if s.replace("-", "_") == str(service).replace("-", "_")]
            hint = (f"; did you mean {alike[0]!r}? (a service is named as its function is "
                    "written)") if alike else ""
            raise InvalidRequestError(
                f"app {self.name!r} has no service {service!r}{hint}; its services: {known}"
            ) from None

    def writers_of(self, stream: Stream[Any] | str) -> list[str]:
        """The services that write ``stream``, in declaration order. A stream with several
        writers gets a ``millstream-writer`` header on each record, naming the service."""
        name = stream_name(stream)
        return [service for service, spec in self.services.items() if name in spec.outputs]

    def __repr__(self) -> str:
        return f"App({self.name!r}, services={sorted(self.services)})"
