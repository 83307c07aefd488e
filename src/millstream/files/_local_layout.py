"""The ``file://`` store's on-disk layout (its folders, a record read as ``ObjectMeta``) and
the durable file operations that write it: a record written and synced, a folder synced, a
rename that makes its folder first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from millstream.files._objects import ObjectMeta

__all__ = ["META", "PENDING", "TMP", "fsync_dir", "meta_of", "replace_retrying", "write_synced"]

#: the folder of records (``.meta/<name>.json``), and of the store's lock
META = ".meta"
#: the folder of writes in flight
TMP = ".tmp"
#: the suffix of a write's record waiting in ``.tmp/`` for its data file to be in place
PENDING = ".meta.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, record: dict[str, object]) -> None:
    with open(path, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())


def replace_retrying(src: Path, dst: Path) -> None:
    """``os.replace``, making ``dst``'s folder first; a delete may drop a folder it found
    empty meanwhile, hence the retries."""
    for attempt in range(3):
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def meta_of(record: dict[str, Any], st: os.stat_result) -> ObjectMeta:
    """What a record says of its object, with the file's modification time."""
    return ObjectMeta(size=record["size"], sha256=record["sha256"],
                      content_type=record.get("content_type"), modified=st.st_mtime)
