"""The tables interface every backend implements: ``Tables`` (the catalog) and ``Table``.

A table holds JSON objects ("documents") by string key. Documents go in as pydantic models
or mappings and come out as dicts, or as a model when one is given. Besides its documents a
table stores the stream offsets it reflects (``StreamPartition`` → next offset), written in
the same transaction as the documents, so a table fed from a stream (``Materializer``) always
equals that stream replayed up to its stored offsets.

These Protocols are the whole contract; ``tests/contracts/test_tables.py`` tests every
backend through them only. Ordering, idempotence and what each call raises are written here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

from pydantic import BaseModel

from millstream.records import StreamPartition

__all__ = [
    "Document",
    "Export",
    "Scalar",
    "Table",
    "TableInfo",
    "Tables",
    "Writes",
]

#: What ``put`` accepts: a pydantic model or a mapping that serialises to a JSON object.
Document = BaseModel | Mapping[str, Any]
#: What ``query`` compares a top-level field with (JSON equality; ``True`` is not ``1``).
Scalar = str | int | float | bool | None
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table's size, declared indexes, the stream that feeds it and the offsets it reflects."""

    name: str
    documents: int
    indexes: tuple[str, ...] = ()
    feed: str | None = None
    offsets: Mapping[StreamPartition, int] = field(default_factory=dict)


class Writes(Protocol):
    """The writes of one open transaction; all become visible together at its end, or none."""

    def put(self, key: str, doc: Document) -> None:
        """Insert or replace the document at ``key``."""
        ...

    def put_json(self, items: Sequence[tuple[str, str]]) -> None:
        """Insert or replace many documents given as JSON text of objects (already checked:
        the fast path of the materializer and of restore)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key given; keys that are absent are ignored."""
        ...

    def clear(self) -> None:
        """Remove every document and every stored offset of the table."""
        ...

    def offsets(self) -> dict[StreamPartition, int]:
        """The stored offsets as this transaction sees them."""
        ...

    def set_offsets(self, offsets: Mapping[StreamPartition, int]) -> None:
        """Store the next offset of each partition given (others stay as they are)."""
        ...

    def set_feed(self, stream: str | None) -> None:
        """Record which stream feeds the table (None: none)."""
        ...


class Export(Protocol):
    """A consistent read view of a table: its documents and offsets at one instant."""

    feed: str | None
    indexes: tuple[str, ...]
    offsets: dict[StreamPartition, int]
    documents: int

    def rows(self) -> Iterator[tuple[str, str]]:
        """Every ``(key, JSON text)`` of the view, by key; read in chunks."""
        ...


class Table(Protocol):
    """One table of documents by key.

    Keys are non-empty strings without NUL characters; they sort by code point on every
    backend. ``put``, ``delete`` and each ``transaction()`` are atomic and durable when they
    return. A document is a JSON object; non-finite floats are refused. Reads see every write
    committed before they start. Using a table that was dropped raises ``NotFoundError``.
    """

    @property
    def name(self) -> str: ...

    @overload
    def get(self, key: str) -> dict[str, Any] | None: ...

    @overload
    def get(self, key: str, model: type[M]) -> M | None: ...

    def get(self, key: str, model: type[M] | None = None) -> dict[str, Any] | M | None:
        """The document at ``key`` (validated into ``model`` when given), or None."""
        ...

    def put(self, key: str, doc: Document) -> None:
        """Insert or replace the document at ``key``."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there (deleting an absent key is not an error)."""
        ...

    @overload
    def scan(self, prefix: str = "", *, after: str | None = None,
             limit: int | None = None) -> list[tuple[str, dict[str, Any]]]: ...

    @overload
    def scan(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
             model: type[M]) -> list[tuple[str, M]]: ...

    def scan(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
             model: type[M] | None = None) -> list[tuple[str, Any]]:
        """``(key, document)`` pairs whose key starts with ``prefix``, in key order, only keys
        greater than ``after`` when given (to page on), at most ``limit``."""
        ...

    @overload
    def query(self, where: Mapping[str, Scalar], *,
              limit: int | None = None) -> list[tuple[str, dict[str, Any]]]: ...

    @overload
    def query(self, where: Mapping[str, Scalar], *, limit: int | None = None,
              model: type[M]) -> list[tuple[str, M]]: ...

    def query(self, where: Mapping[str, Scalar], *, limit: int | None = None,
              model: type[M] | None = None) -> list[tuple[str, Any]]:
        """``(key, document)`` pairs whose top-level fields equal every value in ``where``,
        in key order, at most ``limit``. Fields are identifiers (``[A-Za-z_][A-Za-z0-9_]*``);
        a declared index on a field makes the lookup fast, any field works without one.
        ``None`` matches a field that is JSON null, not a missing one."""
        ...

    def count(self) -> int:
        """How many documents the table holds."""
        ...

    def offsets(self) -> dict[StreamPartition, int]:
        """The stream offsets the table reflects (next offset per partition)."""
        ...

    def info(self) -> TableInfo: ...

    def transaction(self) -> AbstractContextManager[Writes]:
        """Open a write transaction: committed when the ``with`` block ends, rolled back
        when it raises. One transaction at a time per table handle; transactions on one
        table, from any process, run one after another, and each sees everything committed
        before it began."""
        ...

    def export(self) -> AbstractContextManager[Export]:
        """A consistent read view for snapshots and copies; writers are not blocked."""
        ...


class Tables(Protocol):
    """An open tables backend: creates, lists and drops tables and declares their indexes.

    Table names are 1-48 characters of ``[A-Za-z0-9._-]``.
    """

    @property
    def url(self) -> str: ...

    def create_table(self, name: str, *, indexes: Sequence[str] = ()) -> Table:
        """Create an empty table; ``AlreadyExistsError`` if it exists."""
        ...

    def ensure_table(self, name: str, *, indexes: Sequence[str] = ()) -> Table:
        """Create the table unless it exists, and any of ``indexes`` it lacks."""
        ...

    def table(self, name: str) -> Table:
        """The existing table ``name``; ``NotFoundError`` if there is none."""
        ...

    def list_tables(self) -> list[str]:
        """Names of all tables, sorted."""
        ...

    def drop_table(self, name: str) -> None:
        """Delete a table, its documents, indexes and offsets; ``NotFoundError`` if absent."""
        ...

    def create_index(self, table: str, field: str) -> None:
        """Declare an index on top-level ``field`` (idempotent)."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...

    def __enter__(self) -> Tables: ...

    def __exit__(self, *exc_info: object) -> None: ...
