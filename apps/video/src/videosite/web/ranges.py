"""Serving an object of the file store over HTTP, whole or as one byte range.

``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answer 206 with ``Content-Range``; a
range past the end answers 416, and so does any range of an empty object (no byte of it can
be named: ``bytes=-1`` on zero bytes would be ``bytes 0--1/0``); several ranges, or a
malformed header, get the whole object (as RFC 9110 allows). A position of any length is
understood: one with more digits than any object's size is past its end, and is never
converted to an ``int`` (Python refuses to convert strings of over 4,300 digits). The ETag
is the object's SHA-256; an ``If-None-Match`` that matches it (weak comparison, or ``*``)
answers 304 with no body, before any range is looked at. ``HEAD`` answers the headers
``GET`` would, without reading the object. The content type comes from the object's stored
metadata, and only from an allow-list: anything else is sent as
``application/octet-stream`` for download, so stored bytes are never rendered as a page.
The body is read in chunks on worker threads, and the object is closed as soon as the
response ends, whether it finished or its client went away.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from millstream.files import FileRef, FileStore

__all__ = ["CHUNK", "RangeNotSatisfiable", "matches_etag", "parse_range", "serve_file"]

CHUNK = 256 * 1024
#: one range; ASCII digits only (``\d`` would take any script's digits), no trailing newline
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
#: a position with more significant digits than this is past the end of any object
_MAX_DIGITS = 19  # 10 ** 19 is over any size a file store can give (2 ** 63 - 1)
_BEYOND = 10 ** _MAX_DIGITS


class RangeNotSatisfiable(Exception):
    """Raised when a single, well-formed range lies wholly past the end of the object."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single byte range, or None for the whole object.

    Raises RangeNotSatisfiable for a range that starts at or past ``size``, a suffix of
    zero bytes, and any range when ``size`` is 0."""
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - n, 0), size
    if last and _magnitude(last) < _magnitude(first):
        return None  # invalid (the last byte before the first): ignore the header
    start = _position(first)
    end = size if not last else _position(last) + 1
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size)


def _magnitude(digits: str) -> tuple[int, str]:
    """A key that orders ASCII digit strings of any length as the numbers they stand for."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _position(digits: str) -> int:
    """The number ``digits`` (ASCII) stand for, or ``_BEYOND`` when it has more significant
    digits than ``_MAX_DIGITS`` (past the end of anything stored)."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _BEYOND


def matches_etag(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag``: ``*``, or any tag of its list
    equal to it by weak comparison (RFC 9110 8.8.3.2: ``W/`` is ignored on both sides)."""
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


class _Body(Iterator[bytes]):
    """The bytes in pieces, read on worker threads (the object is opened by the first);
    a whole read (``end`` None) is verified against the SHA-256, and a mismatch aborts the
    response rather than finish it with bad bytes. ``close()`` closes the object at once —
    the response calls it however it ended, a client gone mid-way included (a generator
    would hold the object open until the garbage collector found it)."""

    def __init__(self, files: FileStore, ref: FileRef, start: int, end: int | None) -> None:
        self._files, self._ref, self._span = files, ref, (start, end)
        self._stream: BinaryIO | None = None
        self._closed = False
        self._lock = threading.Lock()  # a read in a worker thread, close from the response

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                raise StopIteration
            if self._stream is None:
                start, end = self._span
                self._stream = self._files.open(self._ref, start=start, end=end)
            data = self._stream.read(CHUNK)
        if not data:
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


class _ClosingStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` of a ``_Body`` that closes it when it ends, however."""

    def __init__(self, body: _Body, **options: Any) -> None:
        super().__init__(body, **options)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # also when the client's going cancelled it
                await anyio.to_thread.run_sync(self._body.close)


def serve_file(files: FileStore, ref: FileRef, allowed_types: set[str], *,
               range_header: str | None = None, if_none_match: str | None = None,
               head: bool = False, download_name: str = "download") -> Response:
    """The response for ``ref``: 200 whole, 206 one range, 304 or 416; with ``head``, the
    same status and headers and no body (the object is not read)."""
    size = ref.size
    content_type = ref.content_type if ref.content_type in allowed_types else None
    etag = f'"{ref.sha256}"'
    cache = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
    if if_none_match is not None and matches_etag(if_none_match, etag):
        return Response(status_code=304, headers=cache)
    headers = {"Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff", **cache}
    if content_type is None:
        content_type = "application/octet-stream"
        headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers)
    start, end = span if span is not None else (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if head:
        return Response(status_code=status, headers=headers, media_type=content_type)
    return _ClosingStreamingResponse(_Body(files, ref, start, end if span else None),
                                     status_code=status, headers=headers,
                                     media_type=content_type)
