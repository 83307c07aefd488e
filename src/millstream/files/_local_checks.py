"""Checking a ``file://`` object's file against its record before a range read or
``local_path`` hands it out: at once when its stat signature is the one recorded after its
last check, else by hashing it once for every thread that asks meanwhile, and recording the
new signature (or remembering it in memory when the store cannot be written)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from typing import TYPE_CHECKING

from millstream.errors import CorruptDataError
from millstream.files._local_layout import TMP, write_synced
from millstream.files._objects import ObjectMeta
from millstream.files._verify import DAMAGED, Signature, signature, verify_fd

if TYPE_CHECKING:
    from millstream.files._local import LocalStore

__all__ = ["REMEMBERED_CHECKS", "LocalChecks"]

logger = logging.getLogger(__name__)

#: Checks remembered in memory per store when they cannot be recorded (about 200 bytes each).
REMEMBERED_CHECKS = 4096


class LocalChecks:
    """One store's checks of its files, and what it remembers of them (see the module
    docstring); ``hashed`` counts the whole-file hashes made."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        #: whole-file checks made (hashes of an object against its record)
        self.hashed = 0
        self._memory_lock = threading.Lock()
        #: checks that could not be recorded (a read-only or full disk): (name, sha256,
        #: signature) of files found intact, the least recently used dropped first
        self._checked: OrderedDict[tuple[str, str, Signature], None] = OrderedDict()
        self._checking: dict[tuple[str, str, Signature], Future[None]] = {}
        self._warned_unrecorded = False

    def check_fd(self, name: str, meta: ObjectMeta, fd: int) -> None:
        """Raise ``CorruptDataError`` unless the file open as ``fd`` holds the recorded
        bytes: at once when its signature is the one last verified (in the record, or in
        this process's memory when the record could not be written), else by hashing it —
        once for all the threads that ask at the same time."""
        record = self._store.read_record(name)
        st = os.fstat(fd)
        sig = signature(st)
        if (record is not None and record["sha256"] == meta.sha256
                and record.get("verified") == list(sig)):
            return
        key = (name, meta.sha256, sig)
        with self._memory_lock:
            if key in self._checked:
                self._checked.move_to_end(key)
                return
            running = self._checking.get(key)
            if running is None:
                running = self._checking[key] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            running.result()  # the same answer: None, or the CorruptDataError it raised
            return
        try:
            self._hash_and_record(name, meta, fd, st, key)
        except BaseException as exc:
            running.set_exception(exc)
            raise
        else:
            running.set_result(None)
        finally:
            with self._memory_lock:
                self._checking.pop(key, None)

    def _hash_and_record(self, name: str, meta: ObjectMeta, fd: int, st: os.stat_result,
                         key: tuple[str, str, Signature]) -> None:
        store = self._store
        what = f"{store.url}/{name}"
        if st.st_size != meta.size:
            raise CorruptDataError(
                f"{what}: the file has {st.st_size} bytes, {meta.size} were recorded; "
                f"{DAMAGED}")
        self.hashed += 1
        verified = verify_fd(fd, meta.sha256, meta.size, what)
        if verified is None:
            return  # changed less than RACY_S ago: checked again at its next use
        with store.lock():  # record it only if nothing changed meanwhile
            record = store.read_record(name)
            try:
                now = signature(os.stat(store.root / name))
            except FileNotFoundError:
                return
            if record is None or record["sha256"] != meta.sha256 or now != verified:
                return
            record.update(ino=verified.ino, verified=list(verified))
            tmp = store.root / TMP / f"{uuid.uuid4().hex}.json"
            try:
                write_synced(tmp, record)  # synced: it replaces the write's own record
                os.replace(tmp, store.meta_path(name))
                return
            except OSError as exc:  # a read-only or full disk: remembered here instead
                with contextlib.suppress(OSError):
                    tmp.unlink()
                failure = exc
        with self._memory_lock:
            self._checked[key] = None
            while len(self._checked) > REMEMBERED_CHECKS:
                self._checked.popitem(last=False)
            warn, self._warned_unrecorded = not self._warned_unrecorded, True
        if warn:
            logger.warning(
                "cannot record checks in %s (%s): each object's check is remembered in this "
                "process only (the last %d), so every new process hashes each object again "
                "at its first range read or local_path; make the store writable",
                store.url, failure, REMEMBERED_CHECKS)
