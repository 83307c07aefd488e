"""The pin area under ``millstream.gc/`` that writers and ``files gc`` share (see ``_pins``
for the protocol): its layout, the limits after which leftovers of killed processes expire,
and the store's clock that every age is measured by."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from millstream.errors import CorruptDataError, NotFoundError
from millstream.files._base import FileRef, FileStore

__all__ = [
    "AREA",
    "CONDEMNED",
    "LIMITS",
    "PINS",
    "RUNNING",
    "Dated",
    "Limits",
    "StoreClock",
    "age",
    "key_of",
    "make_note",
    "store_now",
]


AREA = "millstream.gc/"
PINS = AREA + "pins/"
CONDEMNED = AREA + "condemned/"
RUNNING = AREA + "running/"


@dataclass(frozen=True)
class Limits:
    """When leftovers of killed processes expire; see the module docstring. Every process
    that shares a store must use the same limits (tests shorten them)."""

    #: A pin older than this is a leftover of a killed writer.
    lease_s: float = 24 * 3600.0
    #: A running marker not rewritten for this long is a leftover of a killed gc.
    marker_s: float = 600.0
    #: A condemnation older than this is a leftover; gc starts deletes only in its first 1/4.
    condemn_s: float = 120.0


LIMITS = Limits()


@runtime_checkable
class Dated(Protocol):
    """A store that can tell when an object was written."""

    def modified(self, ref: FileRef | str) -> float: ...


def key_of(name: str) -> str:
    """The fixed-length key of object ``name`` in the pin area."""
    return hashlib.sha256(name.encode()).hexdigest()[:40]


class StoreClock:
    """The store's clock, read off an object this process wrote: its modification time plus
    the monotonic time since the write *ended* — never ahead of the store's own clock, so
    ages come out short (a writer waits longer, gc counts pins and markers as fresher)."""

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self._anchor: tuple[float, float] | None = None  # (store mtime, monotonic after)

    def wrote(self, name: str, after: float) -> None:
        """``name`` was written, the write ending at monotonic ``after``: read its time."""
        if isinstance(self._store, Dated):
            try:
                self._anchor = (self._store.modified(name), after)
            except (NotFoundError, CorruptDataError):
                pass  # removed meanwhile: the previous anchor serves

    @property
    def known(self) -> bool:
        return self._anchor is not None

    def now(self) -> float:
        if self._anchor is None:
            raise RuntimeError("StoreClock.now() before any write was read")
        mtime, after = self._anchor
        return mtime + (time.monotonic() - after)

    def probe(self) -> float:
        """Write and remove a probe object to read the store's clock now."""
        name = f"{AREA}clock/{uuid.uuid4().hex}"
        self._store.put(name, b"", content_type="application/octet-stream")
        self.wrote(name, time.monotonic())
        try:
            self._store.delete(name)
        except NotFoundError:
            pass
        return self.now()


def age(store: FileStore, ref: FileRef | str, now: float) -> float:
    """Seconds since ``ref`` was written by the store's clock ``now`` (0 when the store
    cannot tell: never stale). ``NotFoundError`` if it is gone — or going: on ``file://`` a
    delete removes the object's record before its file, and a look in between finds a file
    without a record."""
    if not isinstance(store, Dated):
        return 0.0
    try:
        return now - store.modified(ref)
    except CorruptDataError as exc:
        raise NotFoundError(f"{ref!r} is being deleted") from exc


def make_note(what: str | list[str], after: list[str] | None = None) -> bytes:
    doc: dict[str, object] = {"what": what, "host": socket.gethostname(), "pid": os.getpid(),
                              "time": time.time()}
    if after is not None:
        doc["after"] = after
    return json.dumps(doc).encode()


def store_now(store: FileStore, now: StoreClock | float | None) -> float:
    if isinstance(now, StoreClock):
        return now.now() if now.known else now.probe()
    return StoreClock(store).probe() if now is None else now
