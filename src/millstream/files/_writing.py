"""Writing an object: a source (path, bytes, binary file) streamed in chunks into a writer that
hashes as it goes, and commits the object atomically on ``close()`` or discards it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from millstream.errors import ClosedError, InvalidRequestError, NotFoundError
from millstream.files._base import FileRef, Source
from millstream.files._objects import CHUNK, ObjectMeta

if TYPE_CHECKING:
    from millstream.files._core import StoreBase

__all__ = ["WriterBase", "copy_source", "hash_file"]


def hash_file(f: BinaryIO, size_hint: int | None = None) -> tuple[str, int]:
    """SHA-256 (hex) and size of what ``f`` yields from its position to its end."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        n = f.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        digest.update(view[:n])
        size += n
    return digest.hexdigest(), size


def copy_source(source: Source, writer: WriterBase) -> None:
    """Stream ``source`` (path, bytes or binary file) into ``writer`` chunk by chunk."""
    if isinstance(source, bytes | bytearray | memoryview):
        writer.write(bytes(source))
        return
    if isinstance(source, str | Path):
        try:
            f: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise NotFoundError(f"no file {str(source)!r} to store") from exc
        except IsADirectoryError as exc:
            raise InvalidRequestError(f"{str(source)!r} is a directory, not a file") from exc
        with f:
            _copy_file(f, writer)
        return
    _copy_file(source, writer)


def _copy_file(f: BinaryIO, writer: WriterBase) -> None:
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while True:
            n = readinto(view)
            if not n:
                return
            writer.write_view(view[:n])
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            return
        writer.write(chunk)


class WriterBase:
    """A ``FileWriter``: hashes what is written, hands it to ``_write_chunk`` and, on
    ``close()``, to ``_commit`` (which makes the object appear atomically) — or, on ``abort()``
    or an exception in a ``with`` block, to ``_discard``."""

    ref: FileRef | None

    def __init__(self, store: StoreBase, name: str, content_type: str | None) -> None:
        self.ref = None
        self.name = name
        self.content_type = content_type
        self._store = store
        self._digest = hashlib.sha256()
        self._size = 0
        self._state = "open"  # open | committed | aborted

    # what a backend supplies
    def _write_chunk(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def _commit(self, sha256: str, size: int) -> ObjectMeta:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    # the FileWriter contract
    def write(self, data: bytes) -> int:
        return self.write_view(memoryview(data))

    def write_view(self, view: memoryview) -> int:
        if self._state != "open":
            raise ClosedError(f"writer for {self.name!r} is {self._state}; open a new one")
        self._digest.update(view)
        self._write_chunk(view)
        self._size += len(view)
        return len(view)

    def close(self) -> None:
        """Commit the object (once); later calls do nothing."""
        if self._state != "open":
            return
        try:
            meta = self._commit(self._digest.hexdigest(), self._size)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self.ref = self._store.ref_for(self.name, meta)

    def abort(self) -> None:
        """Discard what was written; the store is left as it was. Idempotent."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._discard()

    def __enter__(self) -> WriterBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.abort()
