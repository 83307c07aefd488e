"""Submitting a video: store the original, then write its ``Upload`` record.

``submit`` is what the REST upload endpoint calls; the processing services take it from
there. The original is stored before the record is written, so no record ever refers to a
missing object.
"""

from __future__ import annotations

import mimetypes
import time
import uuid
from pathlib import Path

from millstream import Streams
from millstream.files import FileStore
from millstream.service import Writer

from .app import app, uploads
from .models import Upload
from .titles import check_title

__all__ = ["UPLOADS", "new_video_id", "submit", "upload_record"]

UPLOADS = uploads.name


def new_video_id() -> str:
    """A fresh video id: 16 hex digits, URL-safe."""
    return uuid.uuid4().hex[:16]


def upload_record(files: FileStore, path: str | Path, title: str, video_id: str,
                  *, now: float | None = None) -> Upload:
    """Store the file at ``path`` as ``uploads/<video_id>/source<suffix>``; its ``Upload``.

    ``BadTitle`` (nothing stored) for a title the site refuses (``videosite.titles``)."""
    title = check_title(title)
    path = Path(path)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    ref = files.put(f"uploads/{video_id}/source{path.suffix.lower()}", path,
                    content_type=content_type)
    return Upload(video_id=video_id, title=title, source=ref,
                  uploaded_at=time.time() if now is None else now,
                  content_type=content_type, size=ref.size)


def submit(streams: Streams, files: FileStore, path: str | Path, title: str, *,
           writer: Writer | None = None, video_id: str | None = None,
           now: float | None = None, timeout: float = 10.0) -> str:
    """Store the video at ``path`` and queue it for processing; return its id.

    ``writer``: the app's ``Writer`` to reuse (a program submitting many keeps one); else one
    is opened on ``streams`` and closed, waiting up to ``timeout`` s. Returns once the
    ``Upload`` record is stored."""
    video_id = video_id or new_video_id()
    upload = upload_record(files, path, title, video_id, now=now)
    if writer is not None:
        writer.send(uploads, upload, key=video_id)
        return video_id
    with app.open_writer(streams, files=files, timeout=timeout) as own:
        own.send(uploads, upload, key=video_id)
    return video_id
