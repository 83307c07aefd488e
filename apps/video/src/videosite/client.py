"""Uploading to a running site over HTTP with the standard library (no extra dependency).

``upload(base_url, token, path, title)`` posts one file to ``POST /api/videos`` as
``multipart/form-data``, streaming it from disk, and returns the video id; a refusal raises
``UploadRefused`` with the HTTP status and the server's reason.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["UploadRefused", "upload"]

CHUNK = 1 << 20


class UploadRefused(Exception):
    """The site refused an upload: ``status`` is the HTTP status, ``reason`` its detail."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _escape(text: str) -> str:
    # a form field's name/filename sits in quotes: keep quotes and line breaks out of it
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


def upload(base_url: str, token: str, path: str | Path, title: str, *,
           timeout: float = 60.0) -> str:
    """Upload the file at ``path`` with ``title``; its new video id."""
    path = Path(path)
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'
            f"{title}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_escape(path.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk
        yield tail

    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                            timeout=timeout)
    try:
        connection.request("POST", f"{parts.path.rstrip('/')}/api/videos", body=body(),
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                                    "Content-Length": str(length)})
        answer = connection.getresponse()
        data = answer.read()
    finally:
        connection.close()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    if answer.status != 202:
        detail = doc.get("detail") if isinstance(doc, dict) else None
        raise UploadRefused(answer.status, str(detail or answer.reason))
    return str(doc["id"])
