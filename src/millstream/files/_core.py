"""What every file store shares: ``StoreBase``, the ``FileStore`` contract built on five
primitives a backend supplies.

A backend subclasses ``StoreBase`` and supplies ``_head`` (the metadata recorded at write),
``_read_range`` (a raw byte stream), ``_new_writer``, ``_remove`` and ``_walk``, and gets the
whole ``FileStore`` contract from them: name checks (``_objects``), stale-reference refusal,
range checks, SHA-256 verification on full reads (``_range``), writes (``_writing``), listing
and the local-path cache (``_cache``). A backend that can tell cheaply whether an object
changed since it was last verified overrides ``_check_range`` so that range reads are
verified too (``file://`` does).

``_head`` reports what was recorded when the object was written and never hashes the object
to make up a record: a record comes only from a write (or an explicit ``adopt`` of a file
that has none), so damage cannot be re-recorded as the object's content. ``file://`` and
other fsspec stores refuse a file without a record; S3, whose objects never change in place,
hashes an object without ``sha256`` metadata at each ``stat`` (written by another tool).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
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
from millstream.files._cache import cached_copy
from millstream.files._objects import CHUNK, ObjectMeta, check_name, check_prefix
from millstream.files._range import RangeReader
from millstream.files._writing import WriterBase, copy_source

__all__ = ["StoreBase"]

logger = logging.getLogger(__name__)


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
        reader = RangeReader(raw, stop - start, meta.sha256 if full and verify else None,
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
        return cached_copy(self._cache_dir, meta, lambda: self.open(name))

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"
