"""Table snapshots in the file store: a consistent copy of the documents and of the stream
offsets they match, which ``restore`` loads so the materializer continues from there.

A snapshot is one gzip-compressed object, ``tables/TABLE/snapshots/TIME.jsonl.gz``, of lines:

* a header, a JSON object: ``format``, ``version``, ``table``, ``feed``, ``indexes``,
  ``offsets`` (``[stream, partition, next_offset]`` triples), ``documents``, ``created_ms``;
* one line per document, by key: the key as a JSON string, a TAB, the document's JSON;
* a trailer, a JSON object: ``{"end": true, "documents": N, "sha256": HEX}``, where the
  hash covers every uncompressed byte before the trailer. (It is not the object's SHA-256,
  the hash of the compressed bytes, which the file store records and ``SnapshotInfo.sha256``,
  ``millstream tables snapshot`` and ``millstream files ls`` show.)

A restore checks the format, the count and the hash while it loads, inside one transaction:
a damaged or truncated snapshot raises ``CorruptDataError`` and the table is left as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import time
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from millstream.errors import CorruptDataError, NotFoundError
from millstream.files._base import FileRef, FileStore
from millstream.records import StreamPartition
from millstream.tables._base import Table, Tables

__all__ = [
    "FORMAT",
    "SnapshotInfo",
    "latest_snapshot",
    "list_snapshots",
    "restore_snapshot",
    "snapshot_header",
    "snapshot_prefix",
    "write_snapshot",
]

FORMAT = "millstream.table-snapshot"
VERSION = 1
_FLUSH = 1 << 20
_BATCH = 5000

#: ``progress(done, total)``: documents written or loaded so far, of all.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot holds: where it is, the table it was taken of, and the offsets.

    ``sha256`` is the snapshot object's SHA-256 — the hash of its stored (compressed) bytes,
    as ``ref``, ``millstream files ls`` and ``files stat`` give it. ``content_sha256`` is the
    one inside the snapshot's trailer, over its uncompressed lines before the trailer, which
    ``restore`` checks while it loads; it is no object's hash.
    """

    ref: FileRef
    table: str
    documents: int
    content_sha256: str
    created_ms: int
    feed: str | None = None
    indexes: tuple[str, ...] = ()
    offsets: dict[StreamPartition, int] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """The snapshot object's SHA-256 (``ref.sha256``)."""
        return self.ref.sha256


def snapshot_prefix(table: str) -> str:
    return f"tables/{table}/snapshots/"


def write_snapshot(table: Table, files: FileStore, *, progress: Progress | None = None,
                   clock: Callable[[], float] = time.time) -> SnapshotInfo:
    """Write a consistent snapshot of ``table`` to ``files``; the live table keeps serving."""
    created_ms = int(clock() * 1000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created_ms / 1000))
    name = (f"{snapshot_prefix(table.name)}{stamp}.{created_ms % 1000:03d}Z-"
            f"{secrets.token_hex(3)}.jsonl.gz")
    digest = hashlib.sha256()
    packer = zlib.compressobj(3, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    with table.export() as view, files.writer(name, content_type="application/gzip") as out:
        header = {
            "format": FORMAT, "version": VERSION, "table": table.name, "feed": view.feed,
            "indexes": list(view.indexes), "documents": view.documents,
            "offsets": [[sp.stream, sp.partition, o] for sp, o in sorted(view.offsets.items())],
            "created_ms": created_ms,
        }
        pending = [json.dumps(header).encode() + b"\n"]
        size = 0
        count = 0
        if progress is not None:
            progress(0, view.documents)
        for key, doc in view.rows():
            line = f"{json.dumps(key, ensure_ascii=False)}\t{doc}\n".encode()
            pending.append(line)
            size += len(line)
            count += 1
            if size >= _FLUSH:
                chunk = b"".join(pending)
                digest.update(chunk)
                out.write(packer.compress(chunk))
                pending, size = [], 0
                if progress is not None:
                    progress(count, view.documents)
        chunk = b"".join(pending)
        digest.update(chunk)
        trailer = {"end": True, "documents": count, "sha256": digest.hexdigest()}
        out.write(packer.compress(chunk + json.dumps(trailer).encode() + b"\n"))
        out.write(packer.flush())
        offsets, indexes, feed = dict(view.offsets), view.indexes, view.feed
    ref = out.ref
    assert ref is not None
    if progress is not None:
        progress(count, count)
    return SnapshotInfo(ref, table.name, count, digest.hexdigest(), created_ms, feed, indexes,
                        offsets)


def list_snapshots(files: FileStore, table: str) -> list[FileRef]:
    """The snapshots of ``table`` in ``files``, oldest first."""
    return list(files.list(snapshot_prefix(table)))


def _damaged(where: str, why: str) -> CorruptDataError:
    return CorruptDataError(f"snapshot {where} is damaged ({why}); it was not loaded — take "
                            "another snapshot, or rebuild the table from its stream")


def _lines(stream: BinaryIO, where: str) -> Generator[bytes, None, None]:
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as unpacked:
            yield from unpacked
    except (OSError, EOFError, zlib.error) as exc:
        raise _damaged(where, f"not a readable gzip stream: {exc}") from exc


def _header(first: bytes, where: str
            ) -> tuple[dict[str, Any], dict[StreamPartition, int], int, tuple[str, ...],
                       str | None]:
    """The header line's object, offsets, document count, indexes and feed."""
    try:
        header: dict[str, Any] = json.loads(first)
        if header.get("format") != FORMAT:
            raise ValueError("not a table snapshot")
        if header.get("version") != VERSION:
            raise ValueError(f"format version {header.get('version')!r}, this millstream "
                             f"reads {VERSION}")
        offsets = {StreamPartition(s, int(p)): int(o) for s, p, o in header["offsets"]}
        expected = int(header["documents"])
        indexes = tuple(str(f) for f in header["indexes"])
        feed = header["feed"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(where, f"bad header: {exc}") from exc
    return header, offsets, expected, indexes, feed


def snapshot_header(files: FileStore, snapshot: FileRef | str) -> SnapshotInfo:
    """What ``snapshot`` says of itself in its header (its table, documents, offsets, time),
    reading only its first line; the documents and the trailer are not read or checked, so
    ``content_sha256`` is empty (``restore_snapshot`` checks them)."""
    ref = files.stat(snapshot)
    with files.open(ref) as stream:
        lines = _lines(stream, ref.url)
        try:
            first = next(lines, b"")
        finally:
            lines.close()
    header, offsets, expected, indexes, feed = _header(first, ref.url)
    return SnapshotInfo(ref, str(header.get("table", "")), expected, "",
                        int(header.get("created_ms", 0)), feed, indexes, offsets)


def restore_snapshot(files: FileStore, snapshot: FileRef | str, tables: Tables, *,
                     table: str | None = None, progress: Progress | None = None
                     ) -> SnapshotInfo:
    """Replace the documents and offsets of ``table`` (default: the snapshot's own table,
    created if missing) by those of ``snapshot`` (a reference, URL or name in ``files``).

    Everything happens in one transaction; a damaged snapshot changes nothing."""
    ref = files.stat(snapshot)
    where = ref.url
    with files.open(ref) as stream:
        lines = _lines(stream, where)
        first = next(lines, b"")
        header, offsets, expected, indexes, feed = _header(first, where)
        target_name = table or str(header["table"])
        target = tables.ensure_table(target_name, indexes=indexes)
        digest = hashlib.sha256(first)
        count = 0
        trailer: dict[str, Any] | None = None
        if progress is not None:
            progress(0, expected)
        with target.transaction() as tx:
            tx.clear()
            batch: list[tuple[str, str]] = []
            for line in lines:
                if trailer is not None:
                    raise _damaged(where, "data after the end")
                if line.startswith(b"{"):
                    try:
                        trailer = json.loads(line)
                    except ValueError as exc:
                        raise _damaged(where, f"bad trailer: {exc}") from exc
                    continue
                digest.update(line)
                key_part, tab, doc = line.rstrip(b"\n").partition(b"\t")
                try:
                    key = json.loads(key_part)
                    if not tab or not isinstance(key, str):
                        raise ValueError("not a key and a document")
                    batch.append((key, doc.decode()))
                except ValueError as exc:
                    raise _damaged(where, f"bad document line {count + 1}: {exc}") from exc
                count += 1
                if len(batch) >= _BATCH:
                    tx.put_json(batch)
                    batch = []
                    if progress is not None:
                        progress(count, expected)
            tx.put_json(batch)
            if trailer is None or trailer.get("end") is not True:
                raise _damaged(where, "truncated: no end line")
            if trailer.get("sha256") != digest.hexdigest():
                raise _damaged(where, "SHA-256 mismatch")
            if count != expected or trailer.get("documents") != count:
                raise _damaged(where, f"{count} documents, the header says {expected}")
            tx.set_offsets(offsets)
            tx.set_feed(feed)
    if progress is not None:
        progress(count, count)
    return SnapshotInfo(ref, target_name, count, digest.hexdigest(),
                        int(header.get("created_ms", 0)), feed, indexes, offsets)


def latest_snapshot(files: FileStore, table: str) -> FileRef:
    """The newest snapshot of ``table``; ``NotFoundError`` if there is none."""
    refs = list_snapshots(files, table)
    if not refs:
        raise NotFoundError(f"no snapshot of table {table!r} in {files.url}; take one with "
                            f"`millstream tables snapshot {table}`")
    return refs[-1]
