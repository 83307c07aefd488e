"""Writing an object into the ``file://`` store atomically (see ``_local``'s docstring for the
order of its syncs and renames, and the fault points between them)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from millstream.errors import InvalidRequestError
from millstream.faults import fault_point
from millstream.files._local_layout import TMP, fsync_dir, replace_retrying, write_synced
from millstream.files._objects import ObjectMeta
from millstream.files._writing import WriterBase

if TYPE_CHECKING:
    from millstream.files._local import LocalStore

__all__ = ["LocalWriter"]


class LocalWriter(WriterBase):
    """A put into ``file://``: bytes to ``.tmp/`` (hashed as they come) and synced, the record
    synced beside them, then both renamed into place under the store's lock."""

    def __init__(self, store: LocalStore, name: str, content_type: str | None) -> None:
        super().__init__(store, name, content_type)
        self._local = store
        self._tmp = store.root / TMP / f"{uuid.uuid4().hex}.part"
        self._pending: Path | None = None
        self._file = open(self._tmp, "xb", buffering=0)  # noqa: SIM115 - closed at commit

    def _write_chunk(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            view = view[n or 0:]

    def _commit(self, sha256: str, size: int) -> ObjectMeta:
        store = self._local
        fd = self._file.fileno()
        os.fsync(fd)
        st = os.fstat(fd)
        self._file.close()
        record = {"name": self.name, "sha256": sha256, "size": size,
                  "content_type": self.content_type, "ino": st.st_ino}
        target = store.root / self.name
        meta_target = store.meta_path(self.name)
        self._pending = store.pending_path(st.st_ino)
        write_synced(self._pending, record)
        fault_point("files.put.before_commit")
        with store.lock():
            try:
                replace_retrying(self._tmp, target)
            except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
                raise InvalidRequestError(
                    f"cannot store {self.name!r}: a part of it is already an object, or it "
                    f"is a folder of other objects ({exc.strerror})"
                ) from exc
            fault_point("files.put.between_renames")
            replace_retrying(self._pending, meta_target)
        fault_point("files.put.after_commit")
        fsync_dir(target.parent)
        fsync_dir(meta_target.parent)
        return ObjectMeta(size=size, sha256=sha256, content_type=self.content_type,
                          modified=st.st_mtime)

    def _discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        if self._pending is not None:
            self._pending.unlink(missing_ok=True)
