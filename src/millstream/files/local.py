"""The ``file://`` store: objects as plain files under a root directory, written atomically.

Layout under the root::

    videos/ab12/source.mp4          the object itself, under its name
    .meta/videos/ab12/source.mp4.json   {"sha256", "size", "content_type", "ino"} recorded at write
    .tmp/<random>.part               writes in flight (and leftovers of killed writers)

A write goes to ``.tmp/`` (hashing as it goes), is fsynced, its sidecar is written and synced
next to it, and then the data file is renamed into place, the sidecar after it, and both
directories are fsynced. A reader therefore sees the old object or the new one, never a part.
A sidecar is trusted only while its inode and size match the data file's (a rename gives the
data file a new inode): after a crash between the two renames, or for a file copied in by
hand, the object is hashed once on first ``stat`` and the sidecar rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from millstream.errors import InvalidRequestError, NotFoundError
from millstream.faults import fault_point
from millstream.files.base import FileRef
from millstream.files.core import ObjectMeta, StoreBase, WriterBase, hash_file

__all__ = ["LocalStore"]

META = ".meta"
TMP = ".tmp"
#: Temporary files older than this are leftovers of killed writers and removed at open.
STALE_TMP_S = 24 * 3600.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalWriter(WriterBase):
    def __init__(self, store: LocalStore, name: str, content_type: str | None) -> None:
        super().__init__(store, name, content_type)
        self._local = store
        self._tmp = store.root / TMP / f"{uuid.uuid4().hex}.part"
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
        meta = {"sha256": sha256, "size": size, "content_type": self.content_type,
                "ino": st.st_ino}
        target = store.root / self.name
        meta_target = store.meta_path(self.name)
        meta_tmp = self._tmp.with_suffix(".json")
        with open(meta_tmp, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("files.put.before_commit")
        try:
            for attempt in range(3):  # a delete may drop a folder it found empty meanwhile
                target.parent.mkdir(parents=True, exist_ok=True)
                meta_target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(self._tmp, target)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            meta_tmp.unlink(missing_ok=True)
            raise InvalidRequestError(
                f"cannot store {self.name!r}: a part of it is already an object, or it is a "
                f"folder of other objects ({exc.strerror})"
            ) from exc
        for attempt in range(3):
            meta_target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(meta_tmp, meta_target)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        fault_point("files.put.after_commit")
        _fsync_dir(target.parent)
        _fsync_dir(meta_target.parent)
        return ObjectMeta(size=size, sha256=sha256, content_type=self.content_type,
                          modified=st.st_mtime)

    def _discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._tmp.with_suffix(".json").unlink(missing_ok=True)


class LocalStore(StoreBase):
    """Objects as files under ``root``; ``local_path`` is the object's own path."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        (self.root / TMP).mkdir(parents=True, exist_ok=True)
        (self.root / META).mkdir(exist_ok=True)
        super().__init__(self.root.as_uri(), None)
        self._reap_stale_tmp()

    def _reap_stale_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_S
        for entry in os.scandir(self.root / TMP):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def meta_path(self, name: str) -> Path:
        return self.root / META / f"{name}.json"

    def _new_writer(self, name: str, content_type: str | None) -> WriterBase:
        return _LocalWriter(self, name, content_type)

    def _head(self, name: str) -> ObjectMeta | None:
        path = self.root / name
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        try:
            with open(self.meta_path(name)) as f:
                meta = json.load(f)
            if meta["ino"] == st.st_ino and meta["size"] == st.st_size:
                return ObjectMeta(size=meta["size"], sha256=meta["sha256"],
                                  content_type=meta.get("content_type"), modified=st.st_mtime)
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
            pass
        return self._adopt(name, path, st)

    def _adopt(self, name: str, path: Path, st: os.stat_result) -> ObjectMeta | None:
        """Hash an object whose sidecar is missing or stale, and record it."""
        try:
            with open(path, "rb") as f:
                sha256, size = hash_file(f)
                after = os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        content_type = None
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, ValueError,
                                 AttributeError):
            content_type = json.loads(self.meta_path(name).read_text()).get("content_type")
        if after.st_ino == st.st_ino and size == after.st_size:
            meta_path = self.meta_path(name)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.root / TMP / f"{uuid.uuid4().hex}.json"
            tmp.write_text(json.dumps({"sha256": sha256, "size": size,
                                       "content_type": content_type, "ino": after.st_ino}))
            os.replace(tmp, meta_path)
        return ObjectMeta(size=size, sha256=sha256, content_type=content_type,
                          modified=after.st_mtime)

    def _read_range(self, name: str, start: int, end: int) -> BinaryIO:
        try:
            f = open(self.root / name, "rb", buffering=0)  # noqa: SIM115 - caller closes
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {name!r} in the file store {self.url}") from exc
        if start:
            f.seek(start)
        return f

    def _remove(self, name: str) -> None:
        # the sidecar first: a crash between leaves a file that is re-hashed, never a sidecar
        # that outlives its data
        self.meta_path(name).unlink(missing_ok=True)
        try:
            (self.root / name).unlink()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {name!r} in the file store {self.url}") from exc
        for top in (self.root, self.root / META):  # drop folders left empty
            parent = (top / name).parent
            while parent != top:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def _walk(self, prefix: str) -> Iterator[tuple[str, ObjectMeta]]:
        base = prefix.rpartition("/")[0]
        top = self.root / base if base else self.root
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if not rel:
                dirnames[:] = [d for d in dirnames if d not in (META, TMP)]
            for filename in filenames:
                name = rel + filename
                if name.startswith(prefix):
                    meta = self._head(name)
                    if meta is not None:
                        yield name, meta

    def local_path(self, ref: FileRef | str) -> Path:
        """The object's own file (not a copy); do not modify it."""
        name, _ = self._meta(ref)
        return self.root / name
