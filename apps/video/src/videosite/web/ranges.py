"""Serving an object of the file store over HTTP, whole or as one byte range.

``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answer 206 with ``Content-Range``; a
range past the end answers 416; several ranges, or a malformed header, get the whole object
(as RFC 9110 allows). The content type comes from the object's stored metadata, and only
from an allow-list: anything else is sent as ``application/octet-stream`` for download, so
stored bytes are never rendered as a page. The body is read in chunks on worker threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from starlette.responses import Response, StreamingResponse

from millstream.files import FileRef, FileStore

__all__ = ["CHUNK", "parse_range", "serve_file"]

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    """Raised when a single, well-formed range lies wholly past the end of the object."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single byte range, or None for the whole object.

    Raises RangeNotSatisfiable for a range that starts at or past ``size``."""
    if not header:
        return None
    found = _RANGE.match(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable
        return max(size - n, 0), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size)


def _chunks(files: FileStore, ref: FileRef, start: int, end: int | None) -> Iterator[bytes]:
    """The bytes in pieces; a whole read (``end`` None) is verified against the SHA-256, and
    a mismatch aborts the response rather than finish it with bad bytes."""
    with files.open(ref, start=start, end=end) as stream:
        while True:
            data = stream.read(CHUNK)
            if not data:
                return
            yield data


def serve_file(files: FileStore, ref: FileRef, range_header: str | None,
               allowed_types: set[str], *, download_name: str = "download") -> Response:
    """The response for ``ref``: 200 whole, 206 one range, or 416."""
    size = ref.size
    content_type = ref.content_type if ref.content_type in allowed_types else None
    headers = {"Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff",
               "Cache-Control": "public, max-age=3600", "ETag": f'"{ref.sha256}"'}
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
    return StreamingResponse(_chunks(files, ref, start, end if span else None),
                             status_code=status,
                             headers=headers, media_type=content_type)
