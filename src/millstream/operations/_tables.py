"""Operations on tables shared by ``millstream tables`` and the console: each table's state
and how far behind its stream it is, reading a query's conditions and saying why a query
matched nothing, and a table's snapshots."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from millstream.errors import InvalidRequestError, NotFoundError
from millstream.files._base import FileRef, FileStore
from millstream.records import StreamPartition
from millstream.streams._base import Streams
from millstream.tables._base import Scalar, Table, TableInfo, Tables
from millstream.tables._snapshot import (
    SnapshotInfo,
    latest_snapshot,
    list_snapshots,
    snapshot_header,
)

__all__ = ["QueryAnswer", "TableStatus", "find_snapshot", "parse_condition", "parse_value",
           "query_table", "snapshot_headers", "table_status", "table_statuses"]

#: how many documents are looked at to say which fields a table's documents have
SAMPLE = 200
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class TableStatus:
    """A table and where it stands against the stream that feeds it."""

    info: TableInfo
    #: the feed's end offset per partition (empty without a feed or when it is gone)
    ends: Mapping[StreamPartition, int]
    #: records of the feed not yet in the table; None without a feed or when it is gone
    behind: int | None
    #: why ``behind`` is not known although the table has a feed ("stream gone")
    problem: str | None = None


def table_status(tables: Tables, streams: Streams | None, name: str) -> TableStatus:
    """``name``'s info and, with ``streams``, how far behind its feed it is."""
    info = tables.table(name).info()
    if info.feed is None or streams is None:
        return TableStatus(info, {}, None)
    try:
        stream = streams.admin().describe_stream(info.feed)
    except NotFoundError:
        return TableStatus(info, {}, None, "stream gone")
    ends = {StreamPartition(info.feed, p.partition): p.end for p in stream.partitions}
    behind = sum(end - info.offsets.get(sp, 0) for sp, end in ends.items())
    return TableStatus(info, ends, behind)


def table_statuses(tables: Tables, streams: Streams | None) -> list[TableStatus]:
    """``table_status`` of every table, by name."""
    return [table_status(tables, streams, name) for name in tables.list_tables()]


def parse_value(raw: str, *, field: str = "") -> Scalar:
    """A condition's value: JSON when it is JSON (``1``, ``2.5``, ``true``, ``null``,
    ``"7"``), else the text itself; a JSON list or object is refused."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw  # not JSON: a plain string
    if isinstance(value, list | dict):
        what = f"{field}={raw}" if field else raw
        raise InvalidRequestError(
            f"condition {what!r}: a field is compared with a string, number, true, false or "
            "null, not a JSON list or object")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise InvalidRequestError(f"condition value {raw!r} is not a string, number or boolean")


def check_field(field: str) -> str:
    """``field`` if it is a top-level field name a query can use, else a clear error."""
    if not _FIELD.fullmatch(field):
        raise InvalidRequestError(
            f"field {field!r} is not a field name: use a top-level field, letters, digits "
            "and '_' not starting with a digit (e.g. status)")
    return field


def parse_condition(text: str) -> tuple[str, Scalar]:
    """``FIELD=VALUE`` as a field and its value (``parse_value``)."""
    field, eq, raw = text.partition("=")
    if not eq or not field:
        raise InvalidRequestError(f"condition {text!r} is not FIELD=VALUE")
    return check_field(field), parse_value(raw, field=field)


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """A query's documents, whether ``limit`` cut them, and why none matched."""

    rows: list[tuple[str, dict[str, Any]]]
    limited: bool
    #: set when nothing matched and a sample of the documents says why
    hint: str | None = None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _why_empty(table: Table, where: Mapping[str, Scalar]) -> str | None:
    sample = [doc for _, doc in table.scan(limit=SAMPLE)]
    if not sample:
        return f"table {table.name!r} has no documents"
    seen = sorted({f for doc in sample for f in doc})
    for field, value in where.items():
        found = [doc[field] for doc in sample if field in doc]
        if not found:
            fields = ", ".join(seen) or "none"
            return (f"no document of table {table.name!r} has a field {field!r} (in the "
                    f"first {len(sample)}); its documents have: {fields}")
        kinds = {_kind(v) for v in found}
        if _kind(value) not in kinds:
            example = json.dumps(found[0], ensure_ascii=False)
            return (f"field {field!r} holds {' or '.join(sorted(kinds))} (e.g. {example}), "
                    f"not {_kind(value)} like {json.dumps(value, ensure_ascii=False)}; write "
                    "the value as JSON (5, true, \"text\")")
    return None


def query_table(table: Table, where: Mapping[str, Scalar], *, limit: int) -> QueryAnswer:
    """The documents whose top-level fields equal every value in ``where``, at most
    ``limit``; when none match, ``hint`` says which field no document has or which value
    has the wrong type, from the first ``SAMPLE`` documents."""
    for field in where:
        check_field(field)
    rows = table.query(where, limit=limit + 1)
    hint = _why_empty(table, where) if not rows else None
    return QueryAnswer(rows[:limit], len(rows) > limit, hint)


def snapshot_headers(files: FileStore, table: str, refs: Iterable[FileRef] | None = None
                     ) -> list[SnapshotInfo]:
    """What each snapshot of ``table`` says in its header, newest first."""
    found = list_snapshots(files, table) if refs is None else list(refs)
    return [snapshot_header(files, ref) for ref in reversed(found)]


def find_snapshot(files: FileStore, table: str, name: str | None) -> FileRef:
    """The snapshot ``name`` (a name or URL in ``files``; default: ``table``'s latest)."""
    return files.stat(name) if name else latest_snapshot(files, table)
