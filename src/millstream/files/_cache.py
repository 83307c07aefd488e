"""The local-path cache of stores that are not local: verified copies named by their SHA-256
(shared by equal objects), checked again whenever a copy's stat signature changes, fetched
again when damaged."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from millstream.errors import CorruptDataError
from millstream.files._objects import CHUNK, ObjectMeta
from millstream.files._verify import signature, verify_fd

__all__ = ["cached_copy", "cached_copy_intact"]

logger = logging.getLogger(__name__)


def cached_copy(cache_dir: Path, meta: ObjectMeta, open_object: Callable[[], BinaryIO]) -> Path:
    """The cache's intact copy of the object ``meta`` describes, fetched through
    ``open_object`` (a verified full read) if there is none."""
    path = cache_dir / meta.sha256[:2] / meta.sha256
    if cached_copy_intact(path, meta):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with open_object() as src, open(tmp, "wb") as dst:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while n := src.readinto(view):  # type: ignore[attr-defined]
                dst.write(view[:n])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def cached_copy_intact(path: Path, meta: ObjectMeta) -> bool:
    """Whether the cache holds an intact copy at ``path``: its signature is the one recorded
    in ``path.ok`` after its last check, or it hashes to ``meta.sha256`` now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        now = signature(os.fstat(fd))
        checked = path.with_name(path.name + ".ok")
        with_sig: object = None
        try:
            with_sig = json.loads(checked.read_text())
        except (FileNotFoundError, ValueError):
            pass
        if with_sig == list(now):
            return True
        try:
            verified = verify_fd(fd, meta.sha256, meta.size, str(path))
        except CorruptDataError as exc:
            logger.warning("damaged cache copy, fetching it again: %s", exc)
            return False
        if verified is not None:
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.ok")
            tmp.write_text(json.dumps(list(verified)))
            os.replace(tmp, checked)
        return True
    finally:
        os.close(fd)
