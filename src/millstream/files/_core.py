"""What every file store shares: names, references, verified reads, writers and the cache.

A backend subclasses ``StoreBase`` and supplies five primitives — ``_head`` (the metadata
recorded at write), ``_read_range`` (a raw byte stream), ``_new_writer``, ``_remove`` and
``_walk`` — and gets the whole ``FileStore`` contract from them: name checks, stale-reference
refusal, range checks, SHA-256 verification on full reads, listing and the local-path cache.
A backend that can tell cheaply whether an object changed since it was last verified
overrides ``_check_range`` so that range reads are verified too (``file://`` does).

``_head`` reports what was recorded when the object was written and never hashes the object
to make up a record: a record comes only from a write (or an explicit ``adopt`` of a file
that has none), so damage cannot be re-recorded as the object's content. ``file://`` and
other fsspec stores refuse a file without a record; S3, whose objects never change in place,
hashes an object without ``sha256`` metadata at each ``stat`` (written by another tool).
The local-path cache (for stores that are not local) holds verified copies named by their
SHA-256 and checks a copy again whenever its stat signature changes (see ``_verify``); a
damaged copy is fetched again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from millstream.errors import (
    ClosedError,
    CorruptDataError,
    InvalidRequestError,
    NotFoundError,
)
from millstream.faults import fault_point
from millstream.files._base import FileRef, Source
from millstream.files._verify import DAMAGED, signature, verify_fd

__all__ = [
    "CHUNK",
    "ObjectMeta",
    "StoreBase",
    "WriterBase",
    "check_name",
    "check_prefix",
    "copy_source",
    "hash_file",
]

logger = logging.getLogger(__name__)

#: Bytes moved per read or write when streaming.
CHUNK = 1024 * 1024
#: First path parts a store keeps for itself (metadata sidecars, in-flight writes).
RESERVED = frozenset({".meta", ".tmp"})


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a store recorded about one object when it was written."""

    size: int
    sha256: str
    content_type: str | None
    modified: float  # seconds since the epoch, as the backend reports it


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid object name, else raise ``InvalidRequestError``."""
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"object name {name!r} must be a non-empty string")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise InvalidRequestError(
            f"object name {name!r} must be a relative '/'-separated path without '..', '.', "
            "empty parts, backslashes or a leading '/' (e.g. 'videos/ab12/source.mp4')"
        )
    if parts[0] in RESERVED:
        raise InvalidRequestError(f"object name {name!r}: {parts[0]!r} is reserved by the store")
    if any(ord(c) < 32 for c in name):
        raise InvalidRequestError(f"object name {name!r} contains control characters")
    return name


def check_prefix(prefix: str) -> str:
    """A listing prefix: any start of a valid name (may end with ``/``), or empty."""
    if prefix:
        check_name(prefix.rstrip("/") or "x/")
    return prefix


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


class _RangeReader(io.RawIOBase):
    """Yields ``raw`` up to ``length`` bytes; when ``sha256`` is given (a full read), checks
    the hash once the last byte was read and raises ``CorruptDataError`` naming ``what``."""

    def __init__(self, raw: BinaryIO, length: int, sha256: str | None, what: str) -> None:
        self._raw = raw
        self._left = length
        self._length = length
        self._expect = sha256
        self._digest = hashlib.sha256() if sha256 is not None else None
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(b).cast("B")
        want = min(len(view), self._left)
        n = self._raw.readinto(view[:want])  # type: ignore[attr-defined]
        if not n:
            raise CorruptDataError(
                f"{self._what}: stored object ended {self._left} byte(s) early "
                f"(expected {self._length} bytes); {DAMAGED}"
            )
        self._left -= n
        if self._digest is not None:
            self._digest.update(view[:n])
            if self._left == 0:
                self._check_end()
        return int(n)

    def _check_end(self) -> None:
        assert self._digest is not None
        extra = self._raw.read(1)
        if extra:
            raise CorruptDataError(
                f"{self._what}: stored object is longer than the {self._length} bytes "
                f"recorded; {DAMAGED}"
            )
        actual = self._digest.hexdigest()
        if actual != self._expect:
            raise CorruptDataError(
                f"{self._what}: SHA-256 mismatch: recorded {self._expect}, read {actual}; "
                f"{DAMAGED}"
            )

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class StoreBase:
    """The shared half of every ``FileStore``; see the module docstring."""

    def __init__(self, url: str, cache_dir: Path | None) -> None:
        self._url = url.rstrip("/")
        self._cache_dir = cache_dir
        self._closed = False

    # --- what a backend supplies ------------------------------------------------------------
    def _head(self, name: str) -> ObjectMeta | None:
        raise NotImplementedError

    def _read_range(self, name: str, start: int, end: int) -> BinaryIO:
        """A raw stream of bytes ``start``..``end`` of the object (may block per chunk)."""
        raise NotImplementedError

    def _new_writer(self, name: str, content_type: str | None) -> WriterBase:
        raise NotImplementedError

    def _remove(self, name: str) -> None:
        raise NotImplementedError

    def _walk(self, prefix: str) -> Iterator[tuple[str, ObjectMeta]]:
        """Every object whose name starts with ``prefix``, in any order."""
        raise NotImplementedError

    def _recorded(self, names: Iterable[str]) -> Iterator[tuple[str, ObjectMeta]]:
        """``(name, record)`` of each of ``names`` that is an object; a damaged one is left out
        with a warning naming it (a backend's ``_walk`` over the names it finds)."""
        for name in names:
            try:
                meta = self._head(name)
            except CorruptDataError as exc:
                logger.warning("not listed: %s", exc)
                continue
            if meta is not None:
                yield name, meta

    def _walk_unrecorded(self, prefix: str) -> Iterator[str]:
        """Names under ``prefix`` holding bytes but no record of a write (not objects). By
        default a backend records every object it holds."""
        return iter(())

    def _adopt(self, name: str, content_type: str | None) -> ObjectMeta:
        """Record the bytes the unrecorded file ``name`` holds now; see ``adopt``."""
        raise InvalidRequestError(
            f"file store {self._url} has no unrecorded files to adopt: it records every "
            "object it holds")

    def _open_version(self, name: str, meta: ObjectMeta, start: int, end: int
                      ) -> BinaryIO | None:
        """``_read_range`` of the very version ``meta`` describes, or ``None`` if the name
        holds another one now (``open`` then reads the metadata again). By default the
        backend cannot tell, and the hash of a full read is the check."""
        return self._read_range(name, start, end)

    def _check_range(self, name: str, meta: ObjectMeta, raw: BinaryIO) -> None:
        """Before a range of ``name`` is served from ``raw``: raise ``CorruptDataError`` if
        the object no longer holds what was recorded. By default ranges are not checked."""

    # --- names and references ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    def ref_for(self, name: str, meta: ObjectMeta) -> FileRef:
        return FileRef(url=f"{self._url}/{name}", size=meta.size, sha256=meta.sha256,
                       content_type=meta.content_type)

    def name_of(self, ref: FileRef | str) -> str:
        """The object name a reference, a URL in this store or a plain name stands for."""
        if self._closed:
            raise ClosedError(f"file store {self._url} is closed")
        text = ref.url if isinstance(ref, FileRef) else ref
        if isinstance(ref, FileRef) or "://" in text:
            if not text.startswith(self._url + "/"):
                raise InvalidRequestError(f"{text!r} is not in the file store {self._url}")
            text = text[len(self._url) + 1:]
        return check_name(text)

    def _meta(self, ref: FileRef | str) -> tuple[str, ObjectMeta]:
        name = self.name_of(ref)
        meta = self._head(name)
        if meta is None:
            raise NotFoundError(f"no object {name!r} in the file store {self._url}")
        self._refuse_stale(ref, meta)
        return name, meta

    @staticmethod
    def _refuse_stale(ref: FileRef | str, meta: ObjectMeta) -> None:
        if isinstance(ref, FileRef) and ref.sha256 != meta.sha256:
            raise NotFoundError(
                f"{ref.url}: the stored object has changed since this reference was made "
                f"(reference SHA-256 {ref.sha256}, stored {meta.sha256})"
            )

    # --- the FileStore contract -------------------------------------------------------------
    def put(self, name: str, source: Source, *, content_type: str | None = None) -> FileRef:
        with self.writer(name, content_type=content_type) as w:
            copy_source(source, w)
        assert w.ref is not None
        return w.ref

    def writer(self, name: str, *, content_type: str | None = None) -> WriterBase:
        if self._closed:
            raise ClosedError(f"file store {self._url} is closed")
        return self._new_writer(check_name(name), content_type)

    def open(self, ref: FileRef | str, *, start: int = 0, end: int | None = None,
             verify: bool = True) -> BinaryIO:
        raw: BinaryIO | None = None
        for attempt in range(5):  # again if a put replaced it since its metadata was read
            name, meta = self._meta(ref)
            stop = meta.size if end is None else end
            if not 0 <= start <= stop <= meta.size:
                raise InvalidRequestError(
                    f"byte range {start}..{end} is outside {name!r} (0..{meta.size})"
                )
            full = start == 0 and stop == meta.size
            fault_point("files.read.after_record")
            if attempt < 4:
                raw = self._open_version(name, meta, start, stop)
            else:  # replaced over and over: the hash of a full read still decides
                raw = self._read_range(name, start, stop)
            if raw is not None:
                break
        assert raw is not None
        if verify and not full:
            try:
                self._check_range(name, meta, raw)
            except BaseException:
                raw.close()
                raise
        reader = _RangeReader(raw, stop - start, meta.sha256 if full and verify else None,
                              f"{self._url}/{name}")
        return io.BufferedReader(reader, CHUNK)

    def read_bytes(self, ref: FileRef | str) -> bytes:
        with self.open(ref) as f:
            return f.read()

    def stat(self, ref: FileRef | str) -> FileRef:
        name, meta = self._meta(ref)
        return self.ref_for(name, meta)

    def modified(self, ref: FileRef | str) -> float:
        """When the object was written (seconds since the epoch); for garbage collection."""
        return self._meta(ref)[1].modified

    def exists(self, ref: FileRef | str) -> bool:
        try:
            self._meta(ref)
        except NotFoundError:
            return False
        return True

    def delete(self, ref: FileRef | str) -> None:
        try:
            name, _ = self._meta(ref)
        except CorruptDataError:  # a damaged object can still be removed
            name = self.name_of(ref)
        self._remove(name)

    def list(self, prefix: str = "") -> Iterator[FileRef]:
        if self._closed:
            raise ClosedError(f"file store {self._url} is closed")
        found = sorted(self._walk(check_prefix(prefix)), key=lambda item: item[0])
        for name, meta in found:
            yield self.ref_for(name, meta)

    def unrecorded(self, prefix: str = "") -> Iterator[str]:
        """Names of files under ``prefix`` that hold bytes but no record of a write: copied
        in by hand, left by an interrupted write of an older version, or with a lost record.
        They are not objects (reads refuse them, ``list`` skips them) until ``adopt``."""
        if self._closed:
            raise ClosedError(f"file store {self._url} is closed")
        yield from sorted(self._walk_unrecorded(check_prefix(prefix)))

    def adopt(self, name: str, *, content_type: str | None = None) -> FileRef:
        """Make the unrecorded file ``name`` an object: hash its bytes as they are and record
        them. Only for a file whose bytes you trust — an object that has a record is refused
        (``InvalidRequestError``), so damage is never re-recorded this way."""
        if self._closed:
            raise ClosedError(f"file store {self._url} is closed")
        name = check_name(name)
        return self.ref_for(name, self._adopt(name, content_type))

    def local_path(self, ref: FileRef | str) -> Path:
        """A verified copy in the cache, named by its SHA-256 (so shared by equal objects);
        checked again whenever its stat signature changed, fetched again if damaged."""
        name, meta = self._meta(ref)
        if self._cache_dir is None:
            raise InvalidRequestError(f"file store {self._url} has no local cache directory")
        path = self._cache_dir / meta.sha256[:2] / meta.sha256
        if _cached_copy_intact(path, meta):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with self.open(name) as src, open(tmp, "wb") as dst:
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                while n := src.readinto(view):  # type: ignore[attr-defined]
                    dst.write(view[:n])
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"


def _cached_copy_intact(path: Path, meta: ObjectMeta) -> bool:
    """Whether the cache holds an intact copy at ``path``: its signature is the one recorded
    in ``path.ok`` after its last check, or it hashes to ``meta.sha256`` now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        now = signature(os.fstat(fd))
        checked = path.with_name(path.name + ".ok")
        with_sig: object = None
        try:
            with_sig = json.loads(checked.read_text())
        except (FileNotFoundError, ValueError):
            pass
        if with_sig == list(now):
            return True
        try:
            verified = verify_fd(fd, meta.sha256, meta.size, str(path))
        except CorruptDataError as exc:
            logger.warning("damaged cache copy, fetching it again: %s", exc)
            return False
        if verified is not None:
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.ok")
            tmp.write_text(json.dumps(list(verified)))
            os.replace(tmp, checked)
        return True
    finally:
        os.close(fd)
