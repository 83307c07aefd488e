"""Any other fsspec protocol (``memory://``, ``gcs://``, ``sftp://``…) as a file store.

The object is written to ``ROOT/.tmp/<random>.part`` while it is hashed; on commit its
sidecar (SHA-256, size, content type, time) is written to ``ROOT/.tmp/<random>.json``, the
object is moved onto ``ROOT/NAME`` (a rename where the filesystem has one, a copy and a delete
on object stores — either way the name shows the old or the whole new object), and then the
sidecar onto ``ROOT/.meta/NAME.json``. A put that fails or is killed before the object's move
leaves the previous object and its sidecar as they were (its temporary files are removed, or
left in ``.tmp/`` if it was killed). Killed between the two moves, it leaves the new object
beside the old sidecar: reads fail with ``CorruptDataError`` until the name is put again.

The sidecar is the object's record and only a write makes one: an object whose bytes no longer
match it fails full reads and ``local_path`` with ``CorruptDataError``. An object with no
sidecar (written by another tool) is not an object, as on ``file://``: ``stat`` and reads
raise ``CorruptDataError`` and ``list`` skips it; ``millstream files adopt`` records it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from millstream.errors import (
    CorruptDataError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from millstream.faults import fault_point
from millstream.files._core import StoreBase
from millstream.files._objects import ObjectMeta
from millstream.files._writing import WriterBase, hash_file

__all__ = ["FsspecStore"]

logger = logging.getLogger(__name__)


class _FsspecWriter(WriterBase):
    def __init__(self, store: FsspecStore, name: str, content_type: str | None) -> None:
        super().__init__(store, name, content_type)
        self._fs_store = store
        self._tmp = f"{store.root}/.tmp/{uuid.uuid4().hex}.part"
        self._sidecar: str | None = None  # the record, in .tmp/ until the object is moved
        self._file = store.fs.open(self._tmp, "wb")

    def _write_chunk(self, data: bytes | memoryview) -> None:
        self._file.write(data)

    def _commit(self, sha256: str, size: int) -> ObjectMeta:
        store = self._fs_store
        self._file.close()
        written = time.time()
        self._sidecar = self._tmp.removesuffix(".part") + ".json"
        store.fs.pipe_file(self._sidecar, json.dumps(
            {"sha256": sha256, "size": size, "content_type": self.content_type,
             "written": written}).encode())
        fault_point("files.put.before_commit")
        store._move(self._tmp, f"{store.root}/{self.name}")
        fault_point("files.put.between_renames")
        store._move(self._sidecar, store.meta_key(self.name))
        self._sidecar = None
        return ObjectMeta(size=size, sha256=sha256, content_type=self.content_type,
                          modified=written)

    def _discard(self) -> None:
        fs = self._fs_store.fs
        try:
            self._file.close()
        finally:
            for leftover in (self._tmp, self._sidecar):
                if leftover is not None and fs.exists(leftover):
                    fs.rm_file(leftover)


class FsspecStore(StoreBase):
    """A store on any fsspec filesystem, with metadata in sidecar objects."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None,
                 cache_dir: Path | None = None) -> None:
        import fsspec

        protocol = url.split("://", 1)[0]
        self.fs = fsspec.filesystem(protocol, **dict(options or {}))
        self.root = str(self.fs._strip_protocol(url)).rstrip("/")
        super().__init__(url, cache_dir)

    def meta_key(self, name: str) -> str:
        return f"{self.root}/.meta/{name}.json"

    def _new_writer(self, name: str, content_type: str | None) -> WriterBase:
        return _FsspecWriter(self, name, content_type)

    def _move(self, src: str, dst: str) -> None:
        """Move ``src`` onto ``dst`` (a put's last steps)."""
        self.fs.mv(src, dst)

    def _head(self, name: str) -> ObjectMeta | None:
        key = f"{self.root}/{name}"
        try:
            info = self.fs.info(key)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnavailableError(f"{self.url}: cannot stat {name!r}: {exc}") from exc
        if info.get("type") != "file":
            return None
        try:
            meta = json.loads(self.fs.cat_file(self.meta_key(name)))
            return ObjectMeta(size=meta["size"], sha256=meta["sha256"],
                              content_type=meta.get("content_type"),
                              modified=float(meta["written"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        raise CorruptDataError(
            f"{self.url}/{name}: no SHA-256 recorded for this object (it was not written "
            "through the store, or its sidecar in .meta/ was lost); record it with "
            f"`millstream files adopt {name}` if its bytes are right, put it again, or "
            "delete it")

    def _read_range(self, name: str, start: int, end: int) -> BinaryIO:
        try:
            f = self.fs.open(f"{self.root}/{name}", "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {name!r} in the file store {self.url}") from exc
        if start:
            f.seek(start)
        return f  # type: ignore[no-any-return]

    def _remove(self, name: str) -> None:
        if self.fs.exists(self.meta_key(name)):
            self.fs.rm_file(self.meta_key(name))
        try:
            self.fs.rm_file(f"{self.root}/{name}")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {name!r} in the file store {self.url}") from exc

    def _walk_unrecorded(self, prefix: str) -> Iterator[str]:
        for name in self._names(prefix):
            if not self.fs.exists(self.meta_key(name)):
                yield name

    def _adopt(self, name: str, content_type: str | None) -> ObjectMeta:
        key = f"{self.root}/{name}"
        if self.fs.exists(self.meta_key(name)):
            raise InvalidRequestError(
                f"{self.url}/{name} is already an object (its SHA-256 was recorded when it "
                "was written); adopt records only objects without a sidecar — put it again "
                "to replace it")
        try:
            with self.fs.open(key, "rb") as f:
                sha256, size = hash_file(f)
        except FileNotFoundError as exc:
            raise NotFoundError(f"no file {name!r} in the file store {self.url}") from exc
        written = time.time()
        sidecar = f"{self.root}/.tmp/{uuid.uuid4().hex}.json"
        self.fs.pipe_file(sidecar, json.dumps(
            {"sha256": sha256, "size": size, "content_type": content_type,
             "written": written}).encode())
        self._move(sidecar, self.meta_key(name))
        logger.info("adopted %s/%s: SHA-256 %s, %s bytes, recorded as found", self.url,
                       name, sha256, size)
        return ObjectMeta(size=size, sha256=sha256, content_type=content_type,
                          modified=written)

    def _names(self, prefix: str) -> Iterator[str]:
        base = prefix.rpartition("/")[0]
        top = f"{self.root}/{base}" if base else self.root
        if not self.fs.exists(top):
            return
        for key in self.fs.find(top):
            name = str(key)[len(self.root) + 1:] if str(key).startswith(self.root) else ""
            name = name.lstrip("/")
            if name and name.split("/", 1)[0] not in (".meta", ".tmp") and (
                    name.startswith(prefix)):
                yield name

    def _walk(self, prefix: str) -> Iterator[tuple[str, ObjectMeta]]:
        return self._recorded(self._names(prefix))
