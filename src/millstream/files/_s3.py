"""The ``s3://bucket/prefix`` store (s3fs): SHA-256 in object metadata, atomic PUTs.

S3 writes an object whole or not at all, so atomicity comes from the protocol: one PUT for
objects up to ``part_size``, else a multipart upload that is completed only after every part
arrived and aborted on any failure (S3 never shows an uncompleted upload). The SHA-256 travels
as user metadata (``x-amz-meta-sha256``) set when the upload starts — so it must be known
first: ``put`` of a path hashes the file, then uploads it; ``put`` of a stream and
``writer()`` spool to a local temporary file (disk, not memory) while hashing, then upload.

Errors are translated by ``_s3_errors`` (a missing bucket or key is a ``NotFoundError``, refused
credentials a ``ConfigError``, only an S3 that does not answer or is busy is retriable).

Options (``endpoint_url``, ``key``, ``secret``, ``client_kwargs``, ``config_kwargs``…) are
s3fs's own and pass through unchanged; s3fs and botocore also read the usual ``AWS_*``
environment variables. Reads fetch ``part_size`` byte ranges as the caller consumes them.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from millstream.errors import (
    ConfigError,
    InvalidRequestError,
    MissingDependencyError,
    NotFoundError,
)
from millstream.faults import fault_point
from millstream.files._base import FileRef, Source
from millstream.files._core import StoreBase
from millstream.files._objects import CHUNK, ObjectMeta, check_name
from millstream.files._s3_errors import MissingObjectError, translate
from millstream.files._writing import WriterBase, hash_file

__all__ = ["S3Store"]

T = TypeVar("T")
#: Objects up to this size go in one PUT; larger ones in parts of this size (S3's minimum
#: part is 5 MiB).
PART_SIZE = 8 * 1024 * 1024


class _S3Writer(WriterBase):
    def __init__(self, store: S3Store, name: str, content_type: str | None) -> None:
        super().__init__(store, name, content_type)
        self._s3 = store
        self._spool = tempfile.TemporaryFile(dir=store.spool_dir)  # noqa: SIM115

    def _write_chunk(self, data: bytes | memoryview) -> None:
        self._spool.write(data)

    def _commit(self, sha256: str, size: int) -> ObjectMeta:
        try:
            self._spool.seek(0)
            return self._s3.upload(self.name, self._spool, size, sha256, self.content_type)
        finally:
            self._spool.close()

    def _discard(self) -> None:
        self._spool.close()


class _RangeFetcher(io.RawIOBase):
    """Reads ``key`` from ``start`` to ``end`` in ranged GETs of ``chunk`` bytes."""

    def __init__(self, store: S3Store, key: str, start: int, end: int, chunk: int) -> None:
        self._store = store
        self._key = key
        self._pos = start
        self._end = end
        self._chunk = chunk
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._pos >= self._end:
                return 0
            stop = min(self._pos + self._chunk, self._end)
            try:
                data = self._store.call(self._store.fs.cat_file, self._key, start=self._pos,
                                        end=stop, doing=f"reading s3://{self._key}")
            except MissingObjectError as exc:
                raise NotFoundError(f"s3://{self._key} was deleted while being read") from exc
            self._pos += len(data)
            self._buffer = memoryview(data)
            if not data:
                return 0
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class S3Store(StoreBase):
    """Objects under ``s3://bucket/prefix``; see the module docstring."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None,
                 cache_dir: Path | None = None, part_size: int = PART_SIZE) -> None:
        try:
            import s3fs
        except ImportError as exc:
            raise MissingDependencyError("the s3:// file store", "s3") from exc
        path = url.split("://", 1)[1].strip("/")
        if not path:
            raise ConfigError(f"files URL {url!r} names no bucket (s3://bucket[/prefix])")
        self.bucket, _, prefix = path.partition("/")
        self.prefix = prefix.strip("/")
        self.fs = s3fs.S3FileSystem(**dict(options or {}))
        given = dict(options or {})
        client = given.get("client_kwargs") or {}
        self.endpoint: str | None = given.get("endpoint_url") or client.get("endpoint_url")
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self.spool_dir = str(cache_dir) if cache_dir is not None else None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(f"s3://{path}", cache_dir)

    # --- s3 calls, with errors translated at this boundary ----------------------------------
    def call(self, fn: Callable[..., T], *args: Any, doing: str = "calling S3",
             **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, its failures as millstream errors (``_s3_errors``)."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # s3fs's builtins, botocore's and aiohttp's errors
            raise translate(exc, self.bucket, self.url, doing, self.endpoint) from exc

    def _s3(self, method: str, *, doing: str, **kwargs: Any) -> Any:
        return self.call(self.fs.call_s3, method, Bucket=self.bucket, doing=doing, **kwargs)

    def check(self) -> str:
        """List one key under the prefix: proves the endpoint answers, the credentials are
        accepted and the bucket exists (else the error says which, and what to do)."""
        prefix = self.prefix + "/" if self.prefix else ""
        out = self._s3("list_objects_v2", Prefix=prefix, MaxKeys=1,
                       doing=f"listing bucket {self.bucket!r}")
        where = f" at {self.endpoint}" if self.endpoint else ""
        some = "objects" if out.get("KeyCount") or out.get("Contents") else "no objects yet"
        self._check_pin_area()
        return (f"bucket {self.bucket!r}{where} answers, credentials accepted, {some}, "
                "millstream.gc/ usable")

    def _check_pin_area(self) -> None:
        """Writers pin objects under ``millstream.gc/`` (see ``files._pins``) and need
        s3:PutObject, GetObject, ListBucket and DeleteObject there: try each, through the
        store's own calls, on a probe object removed at once."""
        probe = f"millstream.gc/doctor/{uuid.uuid4().hex}"
        self.put(probe, b"doctor", content_type="application/octet-stream")
        try:
            self.stat(probe)
            next(iter(self.list("millstream.gc/")), None)
        finally:
            self.delete(probe)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- writing ----------------------------------------------------------------------------
    def upload(self, name: str, f: BinaryIO, size: int, sha256: str,
               content_type: str | None) -> ObjectMeta:
        """PUT (or multipart-upload) ``size`` bytes of ``f`` as ``name`` with its hash."""
        extra: dict[str, Any] = {"Key": self.key(name), "Metadata": {"sha256": sha256}}
        if content_type:
            extra["ContentType"] = content_type
        if size <= self.part_size:
            body = f.read(size)
            fault_point("files.put.before_commit")
            self._s3("put_object", Body=body, doing=f"storing {name!r}", **extra)
            return self._after_upload(name, size, sha256, content_type)
        doing = f"storing {name!r}"
        upload_id = self._s3("create_multipart_upload", doing=doing, **extra)["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := f.read(self.part_size):
                out = self._s3("upload_part", Key=self.key(name), UploadId=upload_id,
                               PartNumber=number, Body=chunk, doing=doing)
                parts.append({"PartNumber": number, "ETag": out["ETag"]})
                number += 1
            fault_point("files.put.before_commit")
            self._s3("complete_multipart_upload", Key=self.key(name), UploadId=upload_id,
                     MultipartUpload={"Parts": parts}, doing=doing)
        except BaseException:
            with contextlib.suppress(Exception):
                self._s3("abort_multipart_upload", Key=self.key(name), UploadId=upload_id,
                         doing=doing)
            raise
        return self._after_upload(name, size, sha256, content_type)

    def _after_upload(self, name: str, size: int, sha256: str,
                      content_type: str | None) -> ObjectMeta:
        self.fs.invalidate_cache()
        meta = self._head(name)
        return meta or ObjectMeta(size=size, sha256=sha256, content_type=content_type,
                                  modified=0.0)

    def put(self, name: str, source: Source, *, content_type: str | None = None) -> FileRef:
        if isinstance(source, str | Path):  # hash first, then upload: no spool copy
            check_name(name)
            try:
                f = open(source, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError as exc:
                raise NotFoundError(f"no file {str(source)!r} to store") from exc
            with f:
                sha256, size = hash_file(f)
                f.seek(0)
                return self.ref_for(name, self.upload(name, f, size, sha256, content_type))
        return super().put(name, source, content_type=content_type)

    def _new_writer(self, name: str, content_type: str | None) -> WriterBase:
        return _S3Writer(self, name, content_type)

    # --- reading ----------------------------------------------------------------------------
    def _head(self, name: str) -> ObjectMeta | None:
        try:
            out = self._s3("head_object", Key=self.key(name), doing=f"looking up {name!r}")
        except MissingObjectError:
            return None
        sha256 = out.get("Metadata", {}).get("sha256")
        size = int(out["ContentLength"])
        if not sha256:  # written by another tool: hash it (once per stat)
            with self._read_range(name, 0, size) as f:
                sha256, size = hash_file(f)
        return ObjectMeta(size=size, sha256=sha256, content_type=out.get("ContentType"),
                          modified=out["LastModified"].timestamp())

    def _read_range(self, name: str, start: int, end: int) -> BinaryIO:
        key = f"{self.bucket}/{self.key(name)}"
        return io.BufferedReader(
            _RangeFetcher(self, key, start, end, self.part_size), CHUNK)

    def _remove(self, name: str) -> None:
        self._s3("delete_object", Key=self.key(name), doing=f"deleting {name!r}")

    def _walk(self, prefix: str) -> Iterator[tuple[str, ObjectMeta]]:
        start = self.key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        token: str | None = None
        skip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            kwargs: dict[str, Any] = {"Prefix": start}
            if token:
                kwargs["ContinuationToken"] = token
            out = self._s3("list_objects_v2", doing=f"listing {self.url}", **kwargs)
            for item in out.get("Contents", []):
                name = item["Key"][skip:]
                try:
                    check_name(name)
                except InvalidRequestError:  # a key no store name maps to: not ours
                    continue
                meta = self._head(name)
                if meta is not None:
                    yield name, meta
            token = out.get("NextContinuationToken")
            if not out.get("IsTruncated") or not token:
                return
