"""Files in the ``file://`` store without a record of a write (copied in by hand, or left by a
write of an older millstream killed between its renames): recognising what such a write left,
and adopting a file — hashing its bytes as they are and recording them."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from millstream.errors import CorruptDataError, InvalidRequestError, NotFoundError, UnavailableError
from millstream.files._local_layout import (
    PENDING,
    TMP,
    fsync_dir,
    meta_of,
    replace_retrying,
    write_synced,
)
from millstream.files._objects import ObjectMeta
from millstream.files._verify import DAMAGED, RACY_S, signature
from millstream.files._writing import hash_file

if TYPE_CHECKING:
    from millstream.files._local import LocalStore

__all__ = ["adopt_unrecorded", "leftover"]

logger = logging.getLogger(__name__)


def leftover(path: Path) -> dict[str, Any] | None:
    """The record in ``.tmp/<random>.json`` that a write of an older millstream left when
    it was killed between its two renames (no name in it; its ``ino`` names the file)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (isinstance(record, dict) and isinstance(record.get("ino"), int)
            and isinstance(record.get("sha256"), str) and "name" not in record):
        return record
    return None


def adopt_unrecorded(store: LocalStore, name: str, content_type: str | None) -> ObjectMeta:
    """Record the bytes the file ``name`` (which has no record) holds now; see
    ``FileStore.adopt``. A record an interrupted write of an older millstream left for the
    same inode must agree with them."""
    what = f"{store.url}/{name}"
    path = store.root / name
    with open(path, "rb") as f:
        started = time.time_ns()
        before = signature(os.fstat(f.fileno()))
        sha256, size = hash_file(f)
        if signature(os.fstat(f.fileno())) != before:
            raise UnavailableError(f"{what} changed while it was hashed; adopt it again")
    leftovers: dict[int, tuple[Path, dict[str, Any]]] = {}
    for entry in os.scandir(store.root / TMP):
        if entry.name.endswith(".json") and not entry.name.endswith(PENDING):
            old = leftover(Path(entry.path))
            if old is not None:
                leftovers[old["ino"]] = (Path(entry.path), old)
    left = leftovers.get(before.ino)
    if left is not None:
        if (left[1]["sha256"], left[1].get("size")) != (sha256, size):
            raise CorruptDataError(
                f"{what}: the interrupted write that left it recorded SHA-256 "
                f"{left[1]['sha256']} ({left[1].get('size')} bytes), its bytes hash to "
                f"{sha256} ({size} bytes); {DAMAGED}")
        content_type = left[1].get("content_type") or content_type  # as written
    record: dict[str, Any] = {"name": name, "sha256": sha256, "size": size,
                              "content_type": content_type, "ino": before.ino}
    if started - before.ctime_ns >= RACY_S * 1e9:
        record["verified"] = list(before)
    with store.lock():
        found = store.stat_and_read(name)
        if found is None:
            raise NotFoundError(f"no object {name!r} in the file store {store.url}")
        if found[0] is not None:
            raise InvalidRequestError(
                f"{what} is already an object (a put recorded it meanwhile); adopt "
                "records only files without a record")
        if signature(found[1]) != before:
            raise UnavailableError(f"{what} changed while it was hashed; adopt it again")
        tmp = store.root / TMP / f"{uuid.uuid4().hex}{PENDING}"
        write_synced(tmp, record)
        replace_retrying(tmp, store.meta_path(name))
        fsync_dir(store.meta_path(name).parent)
        if left is not None:
            left[0].unlink(missing_ok=True)
    logger.info("adopted %s: SHA-256 %s, %s bytes, recorded as found", what, sha256,
                   size)
    return meta_of(record, found[1])
