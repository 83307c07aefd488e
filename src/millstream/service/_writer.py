"""Sending an app's typed records from outside a service: a script, a backfill, a web handler.

Both writers take a stream's handle (or its declared name), check the value against the
stream's payload and encode it with the stream's codec (a pydantic model becomes JSON with
its schema headers, as a service's outputs do). ``Writer`` also claim-checks it when the app
says so, and creates the stream with its declared partitions and retention the first time it
sends to it.

* ``Writer`` (``app.open_writer(streams)``) is for plain code: ``send`` and ``send_many``
  return once the records are durable, with their positions.
* ``AsyncWriter`` is for async code: ``await writer.send(...)`` hands the record to the
  producer (which only buffers) and waits for its acknowledgement on a worker thread, so the
  event loop keeps serving while the record is made durable. It does not create streams
  (that would block the loop): a server creates its app's streams when it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar, overload

from millstream.codecs import BytesCodec
from millstream.errors import InvalidRequestError
from millstream.files._base import FileStore
from millstream.records import Headers, Position
from millstream.service._claimed import app_streams
from millstream.service._stream import Stream, check_value, stream_name
from millstream.streams import open_streams
from millstream.streams._base import BatchHandle, Producer, Streams

if TYPE_CHECKING:
    from millstream.service._app import App

__all__ = ["AsyncWriter", "Writer"]

T = TypeVar("T")
Key = bytes | str | None

#: records per ``send_batch`` of ``Writer.send_many``; one batch is in flight while the
#: next is encoded, so a generator of any length is sent in bounded memory
BATCH = 1_000


class _Encoder:
    """Resolves a stream of ``app`` (handle or name), checks and encodes values for it, and
    creates it once."""

    def __init__(self, app: App | None, streams: Streams, where: str, *,
                 create: bool = True) -> None:
        self._app = app
        self._streams = streams
        self._where = where
        self._create = create
        self._ready: set[str] = set()

    def stream(self, stream: Stream[Any] | str) -> Stream[Any] | None:
        """The app's declaration of ``stream``; None for a name an app-less writer sends
        bytes to. A name or handle the app does not declare is refused."""
        name = stream_name(stream)
        declared = self._app.streams.get(name) if self._app is not None else None
        if declared is None and self._app is not None:
            known = ", ".join(sorted(self._app.streams)) or "none"
            raise InvalidRequestError(
                f"app {self._app.name!r} declares no stream {name!r} (its streams: {known}); "
                f"declare it with app.stream({name!r}, Payload) before sending to it")
        if (declared is not None and isinstance(stream, Stream)
                and stream.codec.description != declared.codec.description):
            raise InvalidRequestError(
                f"this handle of stream {name!r} carries {stream.payload}, but app "
                f"{self._app.name if self._app else ''!r} declares it with {declared.payload}")
        if declared is not None and self._create and name not in self._ready:
            self._streams.admin().ensure_stream(name, declared.partitions, declared.retention)
            self._ready.add(name)
        return declared

    def encode(self, declared: Stream[Any] | None, value: Any) -> tuple[bytes | None, Headers]:
        if declared is None:
            return _BYTES.encode(value)
        check_value(declared, value, self._where)
        return declared.codec.encode(value)


_BYTES = BytesCodec()


def _key(key: Key) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class Writer:
    """Sends typed records to an app's streams and waits until each is durable.

    Open it with ``app.open_writer(streams)`` in a ``with`` block; ``close()`` is
    idempotent. Not thread-safe: one per thread."""

    def __init__(self, app: App, streams: Streams | str | None = None, *,
                 files: FileStore | None = None, timeout: float = 30.0) -> None:
        self._own = streams is None or isinstance(streams, str)
        opened = open_streams(streams) if streams is None or isinstance(streams, str) \
            else streams
        try:
            self._streams = app_streams(app, opened, files)
            self._encoder = _Encoder(app, self._streams, "Writer.send")
            self._producer: Producer | None = self._streams.open_producer()
        except BaseException:
            if self._own:
                opened.close()
            raise
        self._opened = opened
        self._timeout = timeout

    @overload
    def send(self, stream: Stream[T], value: T, *, key: Key = None) -> Position: ...

    @overload
    def send(self, stream: str, value: Any, *, key: Key = None) -> Position: ...

    def send(self, stream: Stream[Any] | str, value: Any, *, key: Key = None) -> Position:
        """Send ``value`` to ``stream`` (a handle, or the name of a declared stream) with
        ``key``; return its position once it is durable. ``DeliveryError`` (or a timeout
        error) if it could not be stored in the writer's ``timeout``."""
        declared = self._encoder.stream(stream)
        data, headers = self._encoder.encode(declared, value)
        return self._open().send(stream_name(stream), data, key=_key(key),
                                 headers=headers).wait(self._timeout)

    def send_many(self, stream: Stream[T], values: Iterable[T], *,
                  key: Callable[[T], Key] | Key = None) -> list[Position]:
        """Send every value of ``values`` (a list or a generator) to ``stream`` in order, with
        ``key`` — one key for all, or a function of the value; return their positions, in
        the same order, once all are durable. Values are sent in batches of 1,000 with one
        batch in flight while the next is encoded. A value the stream cannot carry stops the
        sending with ``InvalidRequestError``; the batches before it are durable."""
        declared = self._encoder.stream(stream)
        name = stream_name(stream)
        producer = self._open()
        positions: list[Position] = []
        pending: BatchHandle | None = None
        items = iter(values)
        while chunk := list(islice(items, BATCH)):
            encoded = [self._encoder.encode(declared, v) for v in chunk]
            keys = [_key(key(v) if callable(key) else key) for v in chunk]
            handle = producer.send_batch(name, [d for d, _ in encoded], keys=keys,
                                         headers=[h for _, h in encoded])
            if pending is not None:
                positions += pending.wait(self._timeout)
            pending = handle
        if pending is not None:
            positions += pending.wait(self._timeout)
        return positions

    def _open(self) -> Producer:
        if self._producer is None:
            raise InvalidRequestError("this Writer is closed; open another with "
                                      "app.open_writer(...)")
        return self._producer

    def close(self) -> None:
        """Flush what is in flight and close the producer (and the streams backend, when the
        writer opened it from a URL). Idempotent."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close()
        finally:
            if self._own:
                self._opened.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncWriter:
    """An asyncio-friendly producer for one streams backend. Values are encoded with the
    app's codec for the stream when an app is given, else they must be bytes."""

    def __init__(self, streams: Streams, app: App | None = None) -> None:
        self._producer: Producer = streams.open_producer()
        # creating a stream would block the loop: a server creates its streams at start
        self._encoder = _Encoder(app, streams, "AsyncWriter.send", create=False)

    @overload
    def send_nowait(self, stream: Stream[T], value: T, *,
                    key: Key = None) -> asyncio.Future[Position]: ...

    @overload
    def send_nowait(self, stream: str, value: Any, *,
                    key: Key = None) -> asyncio.Future[Position]: ...

    def send_nowait(self, stream: Stream[Any] | str, value: Any, *, key: Key = None,
                    ) -> asyncio.Future[Position]:
        """Queue the record and return a future that resolves once it is durable."""
        declared = self._encoder.stream(stream)
        data, headers = self._encoder.encode(declared, value)
        handle = self._producer.send(stream_name(stream), data, key=_key(key),
                                     headers=headers)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, handle.wait)

    @overload
    async def send(self, stream: Stream[T], value: T, *, key: Key = None) -> Position: ...

    @overload
    async def send(self, stream: str, value: Any, *, key: Key = None) -> Position: ...

    async def send(self, stream: Stream[Any] | str, value: Any, *,
                   key: Key = None) -> Position:
        """Send one record and return where it is stored, without blocking the loop."""
        return await self.send_nowait(stream, value, key=key)

    async def flush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.close)
