"""Garbage collection: delete stored objects that no payload refers to any more.

``find_references`` collects the URLs of every ``FileRef``-shaped mapping (``url``, ``size``,
``sha256``) in a decoded JSON value — a record's payload, a table row, a checkpoint.
``collect_garbage`` deletes the store's objects whose URL is not among them, except those
written less than ``older_than_s`` ago: a writer may have stored an object and not yet sent
the record that refers to it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from millstream.errors import InvalidRequestError, NotFoundError
from millstream.files.base import FileRef, FileStore
from millstream.streams.base import Streams
from millstream.streams.reading import read_to_end

__all__ = ["collect_garbage", "find_references", "references_in_streams"]

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@runtime_checkable
class _Dated(Protocol):
    def modified(self, ref: FileRef | str) -> float: ...


def _is_ref(value: dict[object, object]) -> bool:
    url, size, sha256 = value.get("url"), value.get("size"), value.get("sha256")
    return (isinstance(url, str) and isinstance(size, int) and not isinstance(size, bool)
            and isinstance(sha256, str) and _SHA256.fullmatch(sha256) is not None)


def find_references(value: object) -> set[str]:
    """URLs of every FileRef-shaped dict anywhere inside ``value`` (dicts, lists, tuples)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if _is_ref(item):
                found.add(str(item["url"]))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def collect_garbage(store: FileStore, referenced: set[str], *, dry_run: bool = False,
                    older_than_s: float = 3600.0, prefix: str = "",
                    clock: Callable[[], float] = time.time) -> list[FileRef]:
    """Delete (unless ``dry_run``) every object under ``prefix`` whose URL is not in
    ``referenced`` and that is at least ``older_than_s`` seconds old; return them, by name."""
    if older_than_s < 0:
        raise InvalidRequestError(f"older_than_s={older_than_s!r} must be ≥ 0")
    if older_than_s > 0 and not isinstance(store, _Dated):
        raise InvalidRequestError(
            f"{type(store).__name__} cannot tell when objects were written; "
            "pass older_than_s=0 only if no writer is running")
    cutoff = clock() - older_than_s
    garbage = []
    for ref in store.list(prefix):
        if ref.url in referenced:
            continue
        try:
            if older_than_s > 0 and store.modified(ref) > cutoff:  # type: ignore[attr-defined]
                continue
            if not dry_run:
                store.delete(ref)
        except NotFoundError:  # deleted or replaced meanwhile
            continue
        log.info("%s %s (%d bytes)", "would delete" if dry_run else "deleted", ref.url,
                 ref.size)
        garbage.append(ref)
    return garbage


def references_in_streams(streams: Streams,
                          progress: Callable[[str, int], None] | None = None) -> set[str]:
    """URLs referred to by any record still retained in any stream (values decoded as JSON
    where they are JSON; other values cannot hold references). ``progress(stream, records)``
    is called after each stream."""
    found: set[str] = set()
    for name in streams.admin().list_streams():
        seen = 0
        for record in read_to_end(streams, name):
            seen += 1
            value = record.value
            if value and value[:1] in (b"{", b"["):
                try:
                    found |= find_references(json.loads(value))
                except ValueError:
                    pass  # not JSON after all: it can hold no reference
        if progress is not None:
            progress(name, seen)
    return found
