"""The file store interface: large objects stored once, travelling through streams as
references.

A ``FileRef`` is a plain URL plus size and SHA-256 — a small pydantic model that fits in any
payload. ``FileStore`` is what every backend (``file://``, ``s3://``, any fsspec protocol)
implements; ``tests/contracts/test_files.py`` tests them through it only.

Names are relative, ``/``-separated paths inside the store (``videos/ab12/source.mp4``); a
name with ``..``, ``.``, a leading ``/``, an empty part or a backslash is refused with
``InvalidRequestError``, and so are names under ``.meta/`` and ``.tmp/`` (the store's own).
Every method taking ``ref`` accepts a ``FileRef``, a full URL inside this store, or a name.
Backends: ``local.py`` (``file://``), ``s3.py`` (``s3://``), ``fsspec_store.py`` (the rest);
``core.py`` holds what they share.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["FileRef", "FileStore", "FileWriter", "Source"]

#: What ``put`` accepts: a local path, bytes, or a binary file object read in chunks.
Source = str | Path | bytes | BinaryIO


class FileRef(BaseModel):
    """Where an object is, how big it is and its SHA-256 (hex); immutable, usable in payloads."""

    model_config = ConfigDict(frozen=True)

    url: str
    size: int
    sha256: str
    content_type: str | None = None


class FileWriter(Protocol):
    """A file-like handle for writing one object; the object appears (atomically) on
    ``close()`` — never partially — and ``ref`` is set then. Leaving a ``with`` block by an
    exception discards what was written, as ``abort()`` does. ``close()`` and ``abort()`` are
    idempotent; ``write()`` after either raises ``ClosedError``."""

    ref: FileRef | None

    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> FileWriter: ...

    def __exit__(self, *exc_info: object) -> None: ...


class FileStore(Protocol):
    """Stores objects by name; see the module docstring."""

    @property
    def url(self) -> str:
        """The store's root URL (``file:///…/files``, ``s3://bucket/prefix``)."""
        ...

    def put(self, name: str, source: Source, *, content_type: str | None = None) -> FileRef:
        """Store ``source`` under ``name`` (replacing an existing object atomically), streaming
        it in chunks — never whole in memory — while hashing; return its reference."""
        ...

    def writer(self, name: str, *, content_type: str | None = None) -> FileWriter:
        """A handle to write an object piece by piece; committed on ``close()``."""
        ...

    def open(self, ref: FileRef | str, *, start: int = 0, end: int | None = None,
             verify: bool = True) -> BinaryIO:
        """Read an object (by reference or name) as a stream, optionally the byte range
        ``start``..``end`` (exclusive; outside ``0..size`` is ``InvalidRequestError``). A
        full read with ``verify`` checks the SHA-256 (and size) when its last byte is read and
        raises ``CorruptDataError`` naming the object's URL on a mismatch; a range read is
        checked first where the backend can tell cheaply whether the object changed since
        its last check (``file://``), else not. ``verify=False`` reads what is there, for
        salvage. A ``FileRef`` whose hash no longer matches the stored object's (the name was
        overwritten since) is refused at open with ``NotFoundError``. ``NotFoundError`` if
        there is no object."""
        ...

    def read_bytes(self, ref: FileRef | str) -> bytes:
        """The whole object, verified (small objects only)."""
        ...

    def stat(self, ref: FileRef | str) -> FileRef:
        """The stored object's reference (size, hash recorded at write) without reading it;
        ``NotFoundError`` if there is none. Only a write records a hash: a changed object
        keeps the record of what was written."""
        ...

    def exists(self, ref: FileRef | str) -> bool: ...

    def delete(self, ref: FileRef | str) -> None:
        """Remove an object; ``NotFoundError`` if there is none."""
        ...

    def list(self, prefix: str = "") -> Iterator[FileRef]:
        """References of the objects whose names start with ``prefix``, sorted by name."""
        ...

    def local_path(self, ref: FileRef | str) -> Path:
        """A local path to the object's bytes, for tools that need one (PyAV, Pillow): the
        object itself on ``file://``, else a verified copy in a local cache. Either is checked
        against the recorded SHA-256 whenever its stat signature changed since its last check
        (``CorruptDataError`` naming the object if it does not match)."""
        ...

    def close(self) -> None: ...
