"""The ``file://`` store: objects as plain files under a root directory, written atomically,
checked against the SHA-256 recorded when they were written.

Layout under the root::

    videos/ab12/source.mp4              the object itself, under its name
    .meta/videos/ab12/source.mp4.json   its record: {"name", "sha256", "size", "content_type",
                                        "ino"} written by the put, plus "verified" (below)
    .tmp/<random>.part                  writes in flight (and leftovers of killed writers)
    .tmp/<ino>.meta.json                the record of a write about to be renamed into place

A write goes to ``.tmp/`` (hashing as it goes) and is fsynced; its record is written and
synced as ``.tmp/<ino>.meta.json`` (``ino``: the data file's inode, which the rename keeps);
then, under the store's lock (``flock`` of the ``.meta`` folder, taken around every change of
a record), the data file is renamed into place and the record after it, and both
directories are fsynced. A reader sees the old object or the new one, never a part. A writer
killed between the two renames leaves its record in ``.tmp/`` under the inode of the file now
in place: the next look at the name (or the next store opened a day later) finishes the
rename. Only a write makes a record: a file whose record is missing is not an object
(``CorruptDataError`` on use, skipped by ``list``), and a file whose bytes changed keeps the
record of what was written.

Reads check the object against its record, and read the file the record describes: a read
takes the record and opens the file together under a shared lock of the ``.meta`` folder
(the lock a put holds around its two renames and a delete around its two unlinks), so the
file is the one the record was written for. Comparing inodes instead would not do: a put
frees an inode and the next put of the same name may get it again at once (ext4 does), so a
reader holding an old record could take a newer version's file for the old one and report a
false mismatch. A reader racing puts of the same name gets one version whole. A record whose
inode is not its file's, or a file without a record, is looked at again under the exclusive
lock (a put killed between its renames is completed).

- a full read (``open`` to the end, ``read_bytes``) hashes every byte as it streams and
  raises ``CorruptDataError`` at the end on a mismatch (so bit rot is always caught);
- a range read and ``local_path`` first compare the file's stat signature (inode, size,
  mtime, ctime) with the one recorded after its last successful check, ``"verified"`` in the
  record. Equal: the file has not been touched since, and it is used at once (one ``stat``
  and one small read). Different (a first use, a restore from a copy, a touch, any change in
  place — the ctime changes even when the mtime is put back): the whole file is hashed, and
  it is used only if it matches the record, which then gains the new signature. So the first
  ``local_path`` of a new object costs one hash of it, later ones almost nothing, and a file
  changed in place is never handed out. A path stays the caller's to misuse: bytes changed
  after ``local_path`` returned are seen only by the next check.

This module holds the store and its records; a put is ``_local_writer``, the checks
``_local_checks``, files without a record ``_local_adopt``, the layout ``_local_layout``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from millstream.errors import (
    CorruptDataError,
    InvalidRequestError,
    NotFoundError,
)
from millstream.faults import fault_point
from millstream.files._base import FileRef
from millstream.files._core import StoreBase
from millstream.files._local_adopt import adopt_unrecorded, leftover
from millstream.files._local_checks import LocalChecks
from millstream.files._local_layout import META, PENDING, TMP, fsync_dir, meta_of, replace_retrying
from millstream.files._local_writer import LocalWriter
from millstream.files._objects import ObjectMeta
from millstream.files._verify import signature
from millstream.files._writing import WriterBase

__all__ = ["LocalStore"]

logger = logging.getLogger(__name__)

#: Temporary files older than this are leftovers of killed writers and removed at open.
STALE_TMP_S = 24 * 3600.0


class LocalStore(StoreBase):
    """Objects as files under ``root``; ``local_path`` is the object's own path, handed out
    only after the file was checked against its record (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        (self.root / TMP).mkdir(parents=True, exist_ok=True)
        (self.root / META).mkdir(exist_ok=True)
        super().__init__(self.root.as_uri(), None)
        self._checks = LocalChecks(self)
        self._reap_stale_tmp()

    @property
    def hashed(self) -> int:
        """Whole-file checks this store has made (hashes of an object against its record)."""
        return self._checks.hashed

    def _reap_stale_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_S
        for entry in os.scandir(self.root / TMP):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime >= cutoff:
                    continue
                if entry.name.endswith(PENDING):  # a record whose rename a crash cut off?
                    with self.lock():
                        self._finish_put(Path(entry.path))
                elif entry.name.endswith(".json") and leftover(Path(entry.path)):
                    continue  # an older version's: kept for `files adopt` to check against
                os.unlink(entry.path)

    def meta_path(self, name: str) -> Path:
        return self.root / META / f"{name}.json"

    def pending_path(self, ino: int) -> Path:
        """Where a write's record waits for the data file (inode ``ino``) to be in place."""
        return self.root / TMP / f"{ino}{PENDING}"

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Exclusive, across threads and processes, while a record changes; ``shared`` while
        a reader takes a record and opens its file, so that no put or delete comes between."""
        fd = os.open(self.root / META, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _new_writer(self, name: str, content_type: str | None) -> WriterBase:
        return LocalWriter(self, name, content_type)

    # --- records ----------------------------------------------------------------------------
    def read_record(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self.meta_path(name)) as f:
                record = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) or (
                not isinstance(record.get("size"), int)):
            return None
        return record

    def _finish_put(self, pending: Path) -> None:
        """Complete a write killed between its two renames: if ``pending`` (a record in
        ``.tmp/``) describes the file now under its name, move it into place. Call it
        holding ``lock()``, so that it never cuts in between a live writer's renames."""
        try:
            record = json.loads(pending.read_text())
            name = record["name"]
            if os.stat(self.root / name).st_ino != record["ino"]:
                return
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
            return
        meta = self.meta_path(name)
        replace_retrying(pending, meta)
        fsync_dir(meta.parent)
        logger.warning("completed the interrupted write of %s/%s", self.url, name)

    def _record(self, name: str) -> tuple[dict[str, Any], os.stat_result] | None:
        """The object's record and its file's ``stat``; ``None`` if there is no file.
        ``CorruptDataError`` if there is a file but no record of a write.

        A record whose inode is not the file's is looked at again under the lock: a writer
        may be between its two renames (the lock waits for it), or may have been killed
        there (its record is moved into place). If they still differ, the file is not the
        one written (a restored copy, or replaced behind the store's back), and the record
        stands: reads hash the file against it."""
        found = self.stat_and_read(name)
        if found is None:
            return None
        record, st = found
        if record is None or record.get("ino") != st.st_ino:
            with self.lock():
                found = self.stat_and_read(name)
                if found is not None and (found[0] is None
                                          or found[0].get("ino") != found[1].st_ino):
                    self._finish_put(self.pending_path(found[1].st_ino))
                    found = self.stat_and_read(name)
            if found is None:
                return None
            record, st = found
        if record is None:
            raise CorruptDataError(
                f"{self.url}/{name}: no SHA-256 recorded for this file (it was not written "
                "through the store, or its record in .meta/ was lost); put it again with "
                "`millstream files put`, or delete it")
        return record, st

    def stat_and_read(self, name: str
                       ) -> tuple[dict[str, Any] | None, os.stat_result] | None:
        path = self.root / name
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return self.read_record(name), st

    def _head(self, name: str) -> ObjectMeta | None:
        found = self._record(name)
        if found is None:
            return None
        record, st = found
        return meta_of(record, st)

    def _check_range(self, name: str, meta: ObjectMeta, raw: BinaryIO) -> None:
        self._checks.check_fd(name, meta, raw.fileno())

    # --- the rest of the primitives ---------------------------------------------------------
    def _open_with_record(self, name: str) -> tuple[dict[str, Any] | None, int] | None:
        """The object's record and its file opened (a descriptor), taken together under the
        shared lock: the file is the one the record was written for, whatever puts and deletes
        run meanwhile (an inode freed by one put and reused by the next cannot mix them up).
        ``None`` if there is no file. The record is ``None`` if the file has none, or if a put
        killed between its two renames left the file's record in ``.tmp/`` (``_record``
        completes it)."""
        with self.lock(shared=True):
            try:
                fd = os.open(self.root / name, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            record = self.read_record(name)
        ino = os.fstat(fd).st_ino
        if record is not None and record.get("ino") != ino and (
                self.pending_path(ino).exists()):
            record = None
        return record, fd

    def _open_version(self, name: str, meta: ObjectMeta, start: int, end: int
                      ) -> BinaryIO | None:
        opened = self._open_with_record(name)
        if opened is None:
            return None  # deleted since its record was read: open looks again
        record, fd = opened
        if record is None or record["sha256"] != meta.sha256 or record["size"] != meta.size:
            os.close(fd)  # a put replaced it after its record was read
            return None
        f = open(fd, "rb", buffering=0)  # noqa: SIM115 - caller closes
        if start:
            f.seek(start)
        return f

    def _read_range(self, name: str, start: int, end: int) -> BinaryIO:
        try:
            f = open(self.root / name, "rb", buffering=0)  # noqa: SIM115 - caller closes
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {name!r} in the file store {self.url}") from exc
        if start:
            f.seek(start)
        return f

    def _remove(self, name: str) -> None:
        # the record first: a crash between leaves a file without one (refused, deletable),
        # never a record that outlives its data; under the lock, so that a reader never
        # takes the moment between for a file without a record
        with self.lock():
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

    def _names(self, prefix: str) -> Iterator[str]:
        """Every regular file's name under the root that starts with ``prefix``."""
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
                    yield name

    def _walk(self, prefix: str) -> Iterator[tuple[str, ObjectMeta]]:
        return self._recorded(self._names(prefix))

    # --- files without a record -------------------------------------------------------------
    def _walk_unrecorded(self, prefix: str) -> Iterator[str]:
        for name in self._names(prefix):
            try:
                self._record(name)
            except CorruptDataError:
                yield name

    def _adopt(self, name: str, content_type: str | None) -> ObjectMeta:
        try:
            found = self._record(name)  # (completes a put cut off between its renames)
        except CorruptDataError:  # no record: what adopt is for
            return adopt_unrecorded(self, name, content_type)
        if found is None:
            raise NotFoundError(f"no file {name!r} in the file store {self.url}")
        raise InvalidRequestError(
            f"{self.url}/{name} is already an object (its SHA-256 was recorded when it was "
            "written); adopt records only files without a record — put it again to replace it")

    def local_path(self, ref: FileRef | str) -> Path:
        """The object's own file (not a copy), checked first; do not modify it."""
        name = self.name_of(ref)
        path = self.root / name
        for attempt in range(5):
            found = self._record(name)  # completes a put cut off between its renames
            if found is None:
                break
            record, st = found
            self._refuse_stale(ref, meta_of(record, st))
            if record.get("verified") == list(signature(st)):
                return path  # checked since its last change: one stat and one small read
            fault_point("files.read.after_record")
            opened = self._open_with_record(name)
            if opened is None:
                break
            record_now, fd = opened
            try:
                if record_now is None and attempt < 4:
                    continue  # a put or delete since _record: look again
                if record_now is None:
                    raise CorruptDataError(
                        f"{self.url}/{name}: no SHA-256 recorded for this file; put it "
                        "again with `millstream files put`, or delete it")
                meta = meta_of(record_now, os.fstat(fd))
                self._refuse_stale(ref, meta)
                self._checks.check_fd(name, meta, fd)
            finally:
                os.close(fd)
            return path
        raise NotFoundError(f"no object {name!r} in the file store {self.url}")

