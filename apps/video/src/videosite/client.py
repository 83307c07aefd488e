"""Uploading to a running site, and sending view events, over HTTP(S) with the standard
library (no extra dependency).

``upload(base_url, token, path, title)`` posts one file to ``POST /api/videos`` as
``multipart/form-data``, streaming it from disk, and returns the video id. A refusal raises
``UploadRefused`` with the HTTP status and the server's reason; a connection the server
closed before answering (it does that to a body over its size limit) raises
``UploadFailed``; a title the site refuses raises ``videosite.titles.BadTitle`` first.

``send_view(base_url, video_id, event, session, position_s)`` posts one player event to
``POST /api/views`` as a player does; a refusal raises ``ViewRefused`` with the status, the
reason and, when throttled (429), the seconds the site asks to wait.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .titles import check_title

__all__ = ["UploadFailed", "UploadRefused", "ViewRefused", "send_view", "upload"]

CHUNK = 1 << 20


class UploadRefused(Exception):
    """The site refused an upload: ``status`` is the HTTP status, ``reason`` its detail."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class ViewRefused(Exception):
    """The site refused a view event: HTTP ``status``, its ``reason``, and ``retry_after``
    (seconds) when it said when to send again."""

    def __init__(self, status: int, reason: str, retry_after: int | None) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class UploadFailed(OSError):
    """The upload did not get an answer: no connection, or the server closed it mid-way."""


def _connection(base_url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the site and the path prefix; ``ValueError`` for a URL it cannot be."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"site URL {base_url!r} is not an http:// or https:// URL with a "
                         "host; e.g. http://127.0.0.1:8000")
    kind = (http.client.HTTPSConnection if parts.scheme == "https"
            else http.client.HTTPConnection)
    return kind(parts.hostname, parts.port, timeout=timeout), parts.path.rstrip("/")


def _escape(text: str) -> str:
    # a form field's name/filename sits in quotes: keep quotes and line breaks out of it
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


def upload(base_url: str, token: str, path: str | Path, title: str, *,
           timeout: float = 60.0) -> str:
    """Upload the file at ``path`` with ``title``; its new video id. A title the site
    would refuse raises ``BadTitle`` before anything is sent (a line break in it would also
    end the form's field)."""
    title = check_title(title)
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

    connection, prefix = _connection(base_url, timeout)
    cut: OSError | None = None  # the server answered early and closed (a body over its limit)
    try:
        try:
            connection.request("POST", f"{prefix}/api/videos", body=body(),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "multipart/form-data; "
                                                        f"boundary={boundary}",
                                        "Content-Length": str(length)})
        except (BrokenPipeError, ConnectionResetError) as exc:
            cut = exc  # its answer may still be there to read
        answer = connection.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        if cut is not None:
            raise UploadFailed(
                f"{base_url} closed the connection during the upload of {path.name} "
                f"({length} bytes) without an answer: {cut} — a file over the site's "
                "size limit (VIDEOSITE_MAX_UPLOAD_BYTES) is cut off like this") from cut
        raise UploadFailed(f"cannot upload to {base_url}: {exc}") from exc
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


def send_view(base_url: str, video_id: str, event: str, session: str, position_s: float, *,
              timeout: float = 30.0) -> float:
    """Send one view event; the site's time for it (``at``). ``ViewRefused`` when the site
    refuses it; ``OSError`` without an answer."""
    body = json.dumps({"video_id": video_id, "event": event, "session": session,
                       "position_s": position_s}).encode()
    connection, prefix = _connection(base_url, timeout)
    try:
        connection.request("POST", f"{prefix}/api/views", body=body,
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        data = answer.read()
    except http.client.HTTPException as exc:
        raise OSError(f"cannot send a view event to {base_url}: {exc}") from exc
    finally:
        connection.close()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    if answer.status != 202:
        detail = doc.get("detail") if isinstance(doc, dict) else None
        wait = answer.getheader("Retry-After")
        raise ViewRefused(answer.status, str(detail or answer.reason),
                          int(wait) if wait is not None and wait.isdecimal() else None)
    return float(doc["at"])
