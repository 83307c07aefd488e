"""Producing from async code (the REST edge) without blocking the event loop.

A web handler answers at once and defers the work to a stream: ``await writer.send(...)``
hands the record to the producer (which only buffers) and waits for its acknowledgement on a
worker thread, so the event loop keeps serving other requests while the record is made
durable. Values are encoded with the app's codec for the stream when an app is given (a
pydantic model becomes JSON with its schema headers), else they must be bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from millstream.codecs import BytesCodec, Codec
from millstream.records import Position
from millstream.service._app import App
from millstream.streams._base import Producer, Streams

__all__ = ["AsyncWriter"]


class AsyncWriter:
    """An asyncio-friendly producer for one streams backend."""

    def __init__(self, streams: Streams, app: App | None = None) -> None:
        self._producer: Producer = streams.open_producer()
        self._app = app
        self._bytes = BytesCodec()

    def _codec(self, stream: str) -> Codec[Any]:
        if self._app is not None and stream in self._app.streams:
            return self._app.streams[stream].codec
        return self._bytes

    def send_nowait(self, stream: str, value: Any, *, key: bytes | str | None = None,
                    ) -> asyncio.Future[Position]:
        """Queue the record and return a future that resolves once it is durable."""
        data, headers = self._codec(stream).encode(value)
        raw_key = key.encode() if isinstance(key, str) else key
        handle = self._producer.send(stream, data, key=raw_key, headers=headers)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, handle.wait)

    async def send(self, stream: str, value: Any, *, key: bytes | str | None = None) -> Position:
        """Send one record and return where it is stored, without blocking the loop."""
        return await self.send_nowait(stream, value, key=key)

    async def flush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.flush)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._producer.close)
