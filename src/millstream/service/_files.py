"""``ctx.files``: the file store as a service handler sees it.

Objects a handler writes get deterministic names from the input record they came from —
``<group>/<stream>/<partition>/<offset>/<name>`` — so a retried or re-processed record
rewrites its objects instead of adding new ones, and a shadow version (its own group) writes
under its own prefix. Reading is by reference, as with the store itself.

Every object written is pinned first (``millstream.files._pins``); the runner drops the pins
once the records of the batch are durable, so ``millstream files gc`` never deletes an object
whose record is still on its way. An async service gives each record its own copy
(``for_record``), whose pins count as sent only when the record's outputs are handed to the
producer (``sent``): a record that finished early waits for earlier ones, pinned.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import BinaryIO

from millstream.errors import InvalidRequestError
from millstream.files._base import FileRef, FileStore, FileWriter, Source
from millstream.files._pins import Pins, _Pin
from millstream.records import Record

__all__ = ["ServiceFiles", "object_prefix"]


def object_prefix(group: str, record: Record) -> str:
    """Where the objects written while processing ``record`` go."""
    return f"{group}/{record.stream}/{record.partition}/{record.offset}/"


class ServiceFiles:
    """The file store, with names derived from the record being processed."""

    def __init__(self, store: FileStore, group: str, pins: Pins | None = None) -> None:
        self.store = store
        self._group = group
        self._record: Record | None = None
        self._pins = pins
        #: pins held for a record whose outputs are not handed over yet (``for_record``)
        self._tickets: list[list[_Pin]] | None = None

    def _begin(self, record: Record) -> None:
        self._record = record

    def for_record(self) -> ServiceFiles:
        """A copy for one record of an async service: what it pins stays pinned, whatever
        is flushed meanwhile, until ``sent()``."""
        files = copy.copy(self)
        files._tickets = []
        return files

    def sent(self) -> None:
        """This copy's record's outputs are handed to the producer (or will never be): its
        pins may go once they are durable."""
        if self._pins is not None and self._tickets:
            for ticket in self._tickets:
                self._pins.sent(ticket)
            self._tickets = []

    def _hold(self, full: str) -> None:
        if self._pins is None:
            return
        if self._tickets is None:
            self._pins.hold(full, sent=True)
        else:
            self._tickets.append(self._pins.hold(full))

    def name(self, name: str) -> str:
        """The full, deterministic name ``name`` gets for the current input record."""
        if self._record is None:
            raise InvalidRequestError("ctx.files names objects per input record; no record "
                                      "is being processed")
        if not name or name.startswith("/"):
            raise InvalidRequestError(f"object name {name!r} must be a relative path")
        return object_prefix(self._group, self._record) + name

    def put(self, name: str, source: Source, *, content_type: str | None = None) -> FileRef:
        """Store ``source`` as ``name`` for this input record (replacing a previous attempt's)."""
        full = self.name(name)
        self._hold(full)
        return self.store.put(full, source, content_type=content_type)

    def writer(self, name: str, *, content_type: str | None = None) -> FileWriter:
        full = self.name(name)
        self._hold(full)
        return self.store.writer(full, content_type=content_type)

    def open(self, ref: FileRef | str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        return self.store.open(ref, start=start, end=end)

    def read_bytes(self, ref: FileRef | str) -> bytes:
        return self.store.read_bytes(ref)

    def local_path(self, ref: FileRef | str) -> Path:
        return self.store.local_path(ref)

    def stat(self, ref: FileRef | str) -> FileRef:
        return self.store.stat(ref)
