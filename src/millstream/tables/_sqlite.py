"""The SQLite tables backend: every table of a platform in one database file (WAL mode).

Each table is a ``WITHOUT ROWID`` SQLite table ``"doc:NAME"(key, doc)`` holding JSON text; an
index on a field is an expression index on ``json_extract(doc, '$.field')``. The catalog, the
declared indexes and the stored stream offsets live in three ``millstream_*`` tables of the
same file, so documents and offsets commit in one transaction. ``synchronous=NORMAL``: a
crashed process loses nothing committed; a power cut may lose the last commits, documents and
offsets together, so a fed table rolls back consistently and its feed replays the rest.
A new file gets 16 KB pages. sqlite3 exceptions are translated here and never leave this
module.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.filesize import decimal

from millstream._writable import check_directory
from millstream.errors import (
    AlreadyExistsError,
    ClosedError,
    ConfigError,
    CorruptDataError,
    MillstreamError,
    NotFoundError,
    UnavailableError,
)
from millstream.records import StreamPartition
from millstream.tables._base import Document, Scalar, TableInfo
from millstream.tables._common import (
    TableBase,
    check_field,
    check_key,
    check_table_name,
    encode,
)

__all__ = ["SqliteTable", "SqliteTables", "check", "sqlite_path"]

_BUSY_MS = 30_000
_CHUNK = 2000
_PAGE = 16384
_WAL_CHECKPOINT_BYTES = 40_960_000  # 10,000 pages of 4 KB
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS millstream_tables (name TEXT PRIMARY KEY, feed TEXT, "
    "created_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS millstream_table_indexes (table_name TEXT NOT NULL, "
    "field TEXT NOT NULL, PRIMARY KEY (table_name, field)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS millstream_table_offsets (table_name TEXT NOT NULL, "
    "stream TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, "
    "PRIMARY KEY (table_name, stream, partition)) WITHOUT ROWID",
)
# the SQL condition for one query field, by JSON type of the value
_MATCH = {
    "text": "json_extract(doc, '$.{f}') = ? AND json_type(doc, '$.{f}') = 'text'",
    "number": "json_extract(doc, '$.{f}') = ? AND json_type(doc, '$.{f}') IN ('integer', 'real')",
    "true": "json_extract(doc, '$.{f}') = 1 AND json_type(doc, '$.{f}') = 'true'",
    "false": "json_extract(doc, '$.{f}') = 0 AND json_type(doc, '$.{f}') = 'false'",
    "null": "json_extract(doc, '$.{f}') IS NULL AND json_type(doc, '$.{f}') = 'null'",
}


def _doc(name: str) -> str:
    return f'"doc:{name}"'


def _index(name: str, field: str) -> str:
    return f'"ix:{name}:{field}"'


def _translate(exc: sqlite3.Error, path: Path, doing: str, table: str | None = None
               ) -> MillstreamError:
    text = str(exc)
    lower = text.lower()
    if table is not None and "no such table" in lower:
        return NotFoundError(f"table {table!r} does not exist (in {path})")
    if "malformed" in lower or "not a database" in lower or "corrupt" in lower:
        return CorruptDataError(
            f"the tables database {path} is damaged ({text}) while {doing}; restore the table "
            "from a snapshot or rebuild it from its stream")
    if "locked" in lower or "busy" in lower:
        return UnavailableError(
            f"the tables database {path} stayed locked by another process while {doing}; retry")
    if "unable to open" in lower:
        return ConfigError(f"cannot open the tables database {path} ({text}); check the "
                           "directory is writable, or set MILLSTREAM_HOME")
    return UnavailableError(f"the tables database {path} failed while {doing}: {text}")


def _connect(path: Path) -> sqlite3.Connection:
    """A connection with the tables' pragmas; the caller closes it (closed here on failure)."""
    conn = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        # a new file gets 16 KB pages (an existing one keeps its own; only before WAL mode
        # is it settable): a batch of random keys dirties most leaf pages of a table either
        # way, and a quarter as many pages to log made a batch's upserts and commit ~12 %
        # cheaper (bench/table_outputs.py)
        conn.execute(f"PRAGMA page_size={_PAGE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")
        # checkpoint every ~40 MB of WAL, not 4 MB: a batch of random keys dirties thousands
        # of pages, and frequent checkpoints halved the upsert rate (bench/tables.py)
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_BYTES // page}")
        conn.execute("PRAGMA journal_size_limit=67108864")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteTables:
    """Tables in one SQLite file; see the module docstring."""

    def __init__(self, url: str, path: Path) -> None:
        self._url = url
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {path.parent} for the tables database: {exc}"
                              ) from exc
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = _connect(path)
            with self._write("creating the schema"):
                for statement in _SCHEMA:
                    self._conn.execute(statement)
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, path, "opening it") from exc
            raise

    @property
    def url(self) -> str:
        return self._url

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClosedError(f"the tables backend {self._url} is closed")
        return self._conn

    @contextmanager
    def _write(self, doing: str, table: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction on the shared connection (``BEGIN IMMEDIATE``)."""
        with self._lock:
            conn = self.connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, doing, table) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _translate(exc, self.path, doing, table) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def read(self, sql: str, args: Sequence[Any], doing: str, table: str | None = None
             ) -> list[Any]:
        with self._lock:
            try:
                return self.connection().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, doing, table) from exc

    def _exists(self, conn: sqlite3.Connection, name: str) -> bool:
        return conn.execute("SELECT 1 FROM millstream_tables WHERE name=?",
                            (name,)).fetchone() is not None

    def create_table(self, name: str, *, indexes: Sequence[str] = ()) -> SqliteTable:
        check_table_name(name)
        fields = [check_field(f) for f in indexes]
        with self._write(f"creating table {name!r}") as conn:
            if self._exists(conn, name):
                raise AlreadyExistsError(f"table {name!r} already exists")
            self._create(conn, name, fields)
        return SqliteTable(self, name)

    def ensure_table(self, name: str, *, indexes: Sequence[str] = ()) -> SqliteTable:
        check_table_name(name)
        fields = [check_field(f) for f in indexes]
        with self._write(f"creating table {name!r}") as conn:
            if not self._exists(conn, name):
                self._create(conn, name, [])
            for field in fields:
                self._add_index(conn, name, field)
        return SqliteTable(self, name)

    def _create(self, conn: sqlite3.Connection, name: str, fields: Sequence[str]) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {_doc(name)}")
        conn.execute(f"CREATE TABLE {_doc(name)} (key TEXT PRIMARY KEY, doc TEXT NOT NULL) "
                     "WITHOUT ROWID")
        conn.execute("INSERT INTO millstream_tables (name, feed, created_ms) VALUES (?, NULL, ?)",
                     (name, time.time_ns() // 1_000_000))
        for field in fields:
            self._add_index(conn, name, field)

    def _add_index(self, conn: sqlite3.Connection, name: str, field: str) -> None:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {_index(name, field)} ON {_doc(name)} "
                     f"(json_extract(doc, '$.{field}'))")
        conn.execute("INSERT OR IGNORE INTO millstream_table_indexes (table_name, field) "
                     "VALUES (?, ?)", (name, field))

    def create_index(self, table: str, field: str) -> None:
        check_field(field)
        with self._write(f"indexing table {table!r}", table) as conn:
            if not self._exists(conn, table):
                raise NotFoundError(f"table {table!r} does not exist")
            self._add_index(conn, table, field)

    def table(self, name: str) -> SqliteTable:
        check_table_name(name)
        if not self.read("SELECT 1 FROM millstream_tables WHERE name=?", (name,),
                         f"opening table {name!r}"):
            raise NotFoundError(
                f"table {name!r} does not exist in {self._url}; `millstream tables list` "
                "shows the tables there are")
        return SqliteTable(self, name)

    def list_tables(self) -> list[str]:
        rows = self.read("SELECT name FROM millstream_tables ORDER BY name", (), "listing tables")
        return [r[0] for r in rows]

    def drop_table(self, name: str) -> None:
        check_table_name(name)
        with self._write(f"dropping table {name!r}", name) as conn:
            if not self._exists(conn, name):
                raise NotFoundError(f"table {name!r} does not exist")
            conn.execute(f"DROP TABLE IF EXISTS {_doc(name)}")
            for meta in ("millstream_table_indexes", "millstream_table_offsets"):
                conn.execute(f"DELETE FROM {meta} WHERE table_name=?", (name,))
            conn.execute("DELETE FROM millstream_tables WHERE name=?", (name,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteTables:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Writes:
    """One open write transaction on a SQLite table."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._upsert = (f"INSERT INTO {_doc(name)} (key, doc) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET doc=excluded.doc")

    def put(self, key: str, doc: Document) -> None:
        self._conn.execute(self._upsert, (check_key(key), encode(doc)))

    def put_json(self, items: Sequence[tuple[str, str]]) -> None:
        # in key order: each row lands next to the one before in the table's B-tree, ~15%
        # faster than in stream order (a stable sort: of one key given twice the last wins)
        self._conn.executemany(self._upsert, sorted(items, key=itemgetter(0)))

    def delete(self, key: str) -> bool:
        cur = self._conn.execute(f"DELETE FROM {_doc(self._name)} WHERE key=?", (check_key(key),))
        return cur.rowcount > 0

    def delete_many(self, keys: Sequence[str]) -> None:
        self._conn.executemany(f"DELETE FROM {_doc(self._name)} WHERE key=?",
                               [(k,) for k in keys])

    def clear(self) -> None:
        self._conn.execute(f"DELETE FROM {_doc(self._name)}")
        self._conn.execute("DELETE FROM millstream_table_offsets WHERE table_name=?",
                           (self._name,))

    def offsets(self) -> dict[StreamPartition, int]:
        return _offsets(self._conn, self._name)

    def set_offsets(self, offsets: Mapping[StreamPartition, int]) -> None:
        self._conn.executemany(
            "INSERT INTO millstream_table_offsets (table_name, stream, partition, next_offset) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (table_name, stream, partition) "
            "DO UPDATE SET next_offset=excluded.next_offset",
            [(self._name, sp[0], sp[1], off) for sp, off in offsets.items()])

    def set_feed(self, stream: str | None) -> None:
        self._conn.execute("UPDATE millstream_tables SET feed=? WHERE name=?",
                           (stream, self._name))


def _offsets(conn: sqlite3.Connection, name: str) -> dict[StreamPartition, int]:
    rows = conn.execute("SELECT stream, partition, next_offset FROM millstream_table_offsets "
                        "WHERE table_name=? ORDER BY stream, partition", (name,))
    return {StreamPartition(s, p): o for s, p, o in rows}


class _Export:
    """A read transaction on a connection of its own (WAL: writers go on meanwhile)."""

    def __init__(self, conn: sqlite3.Connection, name: str, path: Path) -> None:
        self._conn = conn
        self._name = name
        self._path = path
        row = conn.execute("SELECT feed FROM millstream_tables WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"table {name!r} does not exist")
        self.feed: str | None = row[0]
        self.indexes = tuple(r[0] for r in conn.execute(
            "SELECT field FROM millstream_table_indexes WHERE table_name=? ORDER BY field",
            (name,)))
        self.offsets = _offsets(conn, name)
        self.documents: int = conn.execute(f"SELECT count(*) FROM {_doc(name)}").fetchone()[0]

    def rows(self) -> Iterator[tuple[str, str]]:
        try:
            cur = self._conn.execute(f"SELECT key, doc FROM {_doc(self._name)} ORDER BY key")
            while chunk := cur.fetchmany(_CHUNK):
                yield from chunk
        except sqlite3.Error as exc:
            raise _translate(exc, self._path, f"exporting table {self._name!r}",
                             self._name) from exc


class SqliteTable(TableBase):
    """One table of a ``SqliteTables`` backend."""

    def __init__(self, backend: SqliteTables, name: str) -> None:
        super().__init__(name)
        self._backend = backend

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._backend.read(sql, args, f"reading table {self._name!r}", self._name)

    def _get_json(self, key: str) -> str | None:
        rows = self._read(f"SELECT doc FROM {_doc(self._name)} WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def _scan_json(self, lower: str, inclusive: bool, upper: str | None, limit: int | None
                   ) -> list[tuple[str, str]]:
        sql = f"SELECT key, doc FROM {_doc(self._name)} WHERE key {'>=' if inclusive else '>'} ?"
        args: list[Any] = [lower]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key LIMIT ?"
        args.append(-1 if limit is None else limit)
        return [(k, d) for k, d in self._read(sql, args)]

    def _query_json(self, where: Sequence[tuple[str, str, Scalar]], limit: int | None
                    ) -> list[tuple[str, str]]:
        conditions = []
        args: list[Any] = []
        for field, kind, value in where:
            conditions.append(_MATCH[kind].format(f=field))
            if kind in ("text", "number"):
                args.append(value)
        args.append(-1 if limit is None else limit)
        sql = (f"SELECT key, doc FROM {_doc(self._name)} WHERE {' AND '.join(conditions)} "
               "ORDER BY key LIMIT ?")
        return [(k, d) for k, d in self._read(sql, args)]

    def count(self) -> int:
        return int(self._read(f"SELECT count(*) FROM {_doc(self._name)}", ())[0][0])

    def offsets(self) -> dict[StreamPartition, int]:
        rows = self._read("SELECT stream, partition, next_offset FROM millstream_table_offsets "
                          "WHERE table_name=? ORDER BY stream, partition", (self._name,))
        return {StreamPartition(s, p): o for s, p, o in rows}

    def info(self) -> TableInfo:
        with self.export() as view:
            return TableInfo(self._name, view.documents, view.indexes, view.feed, view.offsets)

    @contextmanager
    def transaction(self) -> Iterator[_Writes]:
        with self._backend._write(f"writing table {self._name!r}", self._name) as conn:
            if not self._backend._exists(conn, self._name):
                raise NotFoundError(f"table {self._name!r} does not exist (it was dropped)")
            yield _Writes(conn, self._name)

    @contextmanager
    def export(self) -> Iterator[_Export]:
        path = self._backend.path
        doing = f"reading table {self._name!r}"
        try:
            conn = _connect(path)
        except sqlite3.Error as exc:
            raise _translate(exc, path, doing, self._name) from exc
        try:
            conn.execute("BEGIN")
            yield _Export(conn, self._name, path)
        except sqlite3.Error as exc:
            raise _translate(exc, path, doing, self._name) from exc
        finally:
            conn.close()


def sqlite_path(url: str) -> Path:
    """The database file a ``sqlite:///abs/path.db`` URL names; ``ConfigError`` if none."""
    path = urlsplit(url).path
    if not path or path == "/":
        raise ConfigError(
            f"tables URL {url!r} names no file; use sqlite:///absolute/path/tables.db")
    return Path(path)


def check(path: Path) -> str:
    """Whether ``path`` opens as a SQLite database, or can be created (``millstream
    doctor``); creates nothing. Raises ``ConfigError`` naming the fix."""
    path = path.absolute()
    if not path.exists():
        check_directory(path.parent, "MILLSTREAM_TABLES", "directory")
        return f"database {path} will be created on first use"
    if path.is_dir():
        raise ConfigError(f"{path} is a directory — name a database file in MILLSTREAM_TABLES")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"sqlite3 cannot open {path} ({exc}) — fix its permissions, restore "
                          "it, or point MILLSTREAM_TABLES at another file") from exc
    return f"database {path} ({decimal(path.stat().st_size)}) opens"
