"""The PostgreSQL tables backend (psycopg 3): each table a ``(key, doc JSONB)`` table.

Keys use the ``"C"`` collation, so they sort by code point as on SQLite; an index on a field
is an expression index on ``doc -> 'field'`` and a query compares ``doc -> 'field'`` with a
JSONB value (JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``). The catalog, indexes
and stored stream offsets live in three ``millstream_*`` tables of the same database, so
documents and offsets commit in one transaction. psycopg exceptions are translated here and
never leave this module.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from millstream.errors import (
    AlreadyExistsError,
    ClosedError,
    ConfigError,
    InvalidRequestError,
    MillstreamError,
    MissingDependencyError,
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

try:
    import psycopg
    from psycopg import errors as pgerrors
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("the PostgreSQL tables backend", "postgres") from exc

__all__ = ["PostgresTable", "PostgresTables", "check"]

_SCHEMA_LOCK = 0x6D696C6C  # advisory lock id: schema changes one at a time
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS millstream_tables (name TEXT PRIMARY KEY, feed TEXT, "
    "created_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS millstream_table_indexes (table_name TEXT NOT NULL, "
    "field TEXT NOT NULL, PRIMARY KEY (table_name, field))",
    "CREATE TABLE IF NOT EXISTS millstream_table_offsets (table_name TEXT NOT NULL, "
    "stream TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, "
    "PRIMARY KEY (table_name, stream, partition))",
)
_CHUNK = 2000


def _doc(name: str) -> str:
    return f'"doc:{name}"'


def _index(name: str, field: str) -> str:
    digest = hashlib.sha1(f"{name}\x00{field}".encode()).hexdigest()[:24]
    return f'"ix:{digest}"'  # identifiers stop at 63 bytes: a hash always fits


def _where(url: str) -> str:
    return url.rsplit("@", 1)[-1]  # never the password


_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')
_REFUSED = re.compile(r'role "[^"]+" does not exist|password authentication failed|'
                      r'no pg_hba\.conf entry|authentication failed|no password supplied|'
                      r'password is required')


def _server(url: str) -> tuple[str, str, str]:
    """(host, port, user) the URL connects to, with libpq's defaults."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        info = {}
    return (str(info.get("host") or "localhost"), str(info.get("port") or "5432"),
            str(info.get("user") or "postgres"))


def _connect_error(text: str, url: str) -> MillstreamError:
    """What a failed connection means: no such database, refused credentials, or no answer."""
    host, port, user = _server(url)
    said = text.split("FATAL:", 1)[1].strip() if "FATAL:" in text else text
    missing = _MISSING_DATABASE.search(text)
    if missing:
        name = missing.group(1)
        return NotFoundError(
            f"database {name!r} does not exist at {host}:{port}: create it (createdb -h {host} "
            f"-p {port} -U {user} {name}) or point MILLSTREAM_TABLES at an existing database")
    if _REFUSED.search(text):
        return ConfigError(
            f"PostgreSQL at {host}:{port} refused the credentials ({said}): check the user "
            "and password in MILLSTREAM_TABLES (postgresql://USER:PASSWORD@HOST:PORT/DATABASE), "
            "PGPASSWORD or ~/.pgpass")
    return UnavailableError(
        f"cannot connect to PostgreSQL at {host}:{port} ({said}): check that the server is "
        "running and that MILLSTREAM_TABLES names its host and port")


def _translate(exc: Exception, url: str, doing: str, table: str | None = None
               ) -> MillstreamError:
    text = " ".join(str(exc).split())
    if isinstance(exc, pgerrors.UndefinedTable) and table is not None:
        return NotFoundError(f"table {table!r} does not exist (in {_where(url)})")
    if isinstance(exc, pgerrors.UniqueViolation | pgerrors.DuplicateTable):
        return AlreadyExistsError(f"{doing}: {text}")
    if isinstance(exc, psycopg.DataError):
        return InvalidRequestError(f"PostgreSQL refused the data while {doing}: {text}")
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return ConfigError(f"PostgreSQL at {_where(url)} refused while {doing}: {text} — grant "
                           "the user the privilege, or use another user")
    if isinstance(exc, psycopg.OperationalError) and doing == "connecting":
        return _connect_error(text, url)
    return UnavailableError(f"PostgreSQL at {_where(url)} failed while {doing}: {text}")


def _connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise _translate(exc, url, "connecting") from exc


def check(url: str) -> str:
    """Connect as the backend does and say what is there (``millstream doctor``), creating
    nothing: raises ``NotFoundError`` for a missing database, ``ConfigError`` for refused
    credentials or a user who may not create the schema, ``UnavailableError`` for no answer
    — each naming the fix."""
    host, port, _ = _server(url)
    with _connect(url) as conn:
        try:
            row = conn.execute(
                "SELECT current_user, current_database(), current_schema(), "
                "to_regclass('millstream_tables') IS NOT NULL, "
                "COALESCE(has_schema_privilege(current_schema(), 'CREATE'), false)").fetchone()
            assert row is not None
            user, database, schema, ready, may_create = row
            count = conn.execute("SELECT count(*) FROM millstream_tables").fetchone() \
                if ready else None
        except psycopg.Error as exc:
            raise _translate(exc, url, "checking the database") from exc
    where = f"database {database!r} at {host}:{port} as {user!r}"
    if count is not None:
        return f"{where}: {count[0]} table(s)"
    if not may_create:
        raise ConfigError(
            f"user {user!r} may not create tables in {where.split(' as ')[0]}"
            + (f" (schema {schema!r}): GRANT CREATE ON SCHEMA {schema} TO {user}, "
               if schema else ": no schema on its search_path exists; create one, ")
            + "or use a user that may")
    return f"{where}: the schema will be created on first use"


class PostgresTables:
    """Tables in one PostgreSQL database; see the module docstring."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.RLock()
        self._pg: psycopg.Connection[Any] | None = None
        self._closed = False
        with self._write("creating the schema") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                cur.execute(statement)

    @property
    def url(self) -> str:
        return self._url

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return _connect(self._url, autocommit=autocommit)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise ClosedError(f"the tables backend {_where(self._url)} is closed")
        if self._pg is None or self._pg.closed:
            self._pg = self.connect()
        return self._pg

    @contextmanager
    def _write(self, doing: str, table: str | None = None) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise _translate(exc, self._url, doing, table) from exc

    def read(self, sql: str, args: Sequence[Any], doing: str, table: str | None = None
             ) -> list[Any]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.encode(), args)
                    return cur.fetchall()
            except psycopg.Error as exc:
                raise _translate(exc, self._url, doing, table) from exc

    @staticmethod
    def _exists(cur: psycopg.Cursor[Any], name: str) -> bool:
        cur.execute("SELECT 1 FROM millstream_tables WHERE name=%s", (name,))
        return cur.fetchone() is not None

    def create_table(self, name: str, *, indexes: Sequence[str] = ()) -> PostgresTable:
        check_table_name(name)
        fields = [check_field(f) for f in indexes]
        with self._write(f"creating table {name!r}") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if self._exists(cur, name):
                raise AlreadyExistsError(f"table {name!r} already exists")
            self._create(cur, name, fields)
        return PostgresTable(self, name)

    def ensure_table(self, name: str, *, indexes: Sequence[str] = ()) -> PostgresTable:
        check_table_name(name)
        fields = [check_field(f) for f in indexes]
        with self._write(f"creating table {name!r}") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if not self._exists(cur, name):
                self._create(cur, name, [])
            for field in fields:
                self._add_index(cur, name, field)
        return PostgresTable(self, name)

    def _create(self, cur: psycopg.Cursor[Any], name: str, fields: Sequence[str]) -> None:
        cur.execute(f"DROP TABLE IF EXISTS {_doc(name)}".encode())
        cur.execute(f'CREATE TABLE {_doc(name)} (key TEXT COLLATE "C" PRIMARY KEY, '
                    "doc JSONB NOT NULL)".encode())
        cur.execute("INSERT INTO millstream_tables (name, feed, created_ms) "
                    "VALUES (%s, NULL, %s)", (name, time.time_ns() // 1_000_000))
        for field in fields:
            self._add_index(cur, name, field)

    def _add_index(self, cur: psycopg.Cursor[Any], name: str, field: str) -> None:
        cur.execute(f"CREATE INDEX IF NOT EXISTS {_index(name, field)} ON {_doc(name)} "
                    f"((doc -> '{field}'))".encode())
        cur.execute("INSERT INTO millstream_table_indexes (table_name, field) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING", (name, field))

    def create_index(self, table: str, field: str) -> None:
        check_field(field)
        with self._write(f"indexing table {table!r}", table) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if not self._exists(cur, table):
                raise NotFoundError(f"table {table!r} does not exist")
            self._add_index(cur, table, field)

    def table(self, name: str) -> PostgresTable:
        check_table_name(name)
        if not self.read("SELECT 1 FROM millstream_tables WHERE name=%s", (name,),
                         f"opening table {name!r}"):
            raise NotFoundError(
                f"table {name!r} does not exist in {_where(self._url)}; `millstream tables "
                "list` shows the tables there are")
        return PostgresTable(self, name)

    def list_tables(self) -> list[str]:
        rows = self.read("SELECT name FROM millstream_tables ORDER BY name", (),
                         "listing tables")
        return [r[0] for r in rows]

    def drop_table(self, name: str) -> None:
        check_table_name(name)
        with self._write(f"dropping table {name!r}", name) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if not self._exists(cur, name):
                raise NotFoundError(f"table {name!r} does not exist")
            cur.execute(f"DROP TABLE IF EXISTS {_doc(name)}".encode())
            for meta in ("millstream_table_indexes", "millstream_table_offsets"):
                cur.execute(f"DELETE FROM {meta} WHERE table_name=%s".encode(), (name,))
            cur.execute("DELETE FROM millstream_tables WHERE name=%s", (name,))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pg is not None:
                self._pg.close()
                self._pg = None

    def __enter__(self) -> PostgresTables:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: where put_json stages rows: a temporary table of the session, emptied after each use
_STAGE = ("CREATE TEMPORARY TABLE IF NOT EXISTS millstream_stage (key TEXT, doc TEXT) "
          "ON COMMIT DELETE ROWS")
_STAGE_COPY = "COPY millstream_stage (key, doc) FROM STDIN"
_STAGE_CLEAR = "DELETE FROM millstream_stage"


class _Writes:
    """One open write transaction on a PostgreSQL table."""

    def __init__(self, cur: psycopg.Cursor[Any], name: str) -> None:
        self._cur = cur
        self._name = name
        self._upsert = (f"INSERT INTO {_doc(name)} (key, doc) VALUES (%s, %s::jsonb) "
                        "ON CONFLICT (key) DO UPDATE SET doc=EXCLUDED.doc").encode()
        self._delete = f"DELETE FROM {_doc(name)} WHERE key=%s".encode()
        self._upsert_staged = (
            f"INSERT INTO {_doc(name)} (key, doc) SELECT key, doc::jsonb FROM "
            "millstream_stage ON CONFLICT (key) DO UPDATE SET doc=EXCLUDED.doc").encode()
        self._delete_many = f"DELETE FROM {_doc(name)} WHERE key = ANY(%s::text[])".encode()

    def put(self, key: str, doc: Document) -> None:
        self._cur.execute(self._upsert, (check_key(key), encode(doc)))

    def put_json(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        # COPY into a session-local staging table, then one upsert from it: ~2× executemany
        # (pipelined) and ~5× an upsert from arrays, whose adaptation is slow. One row per key
        # (the last given): one statement may change a row only once.
        cur = self._cur
        cur.execute(_STAGE)
        with cur.copy(_STAGE_COPY) as copy:
            for row in dict(items).items():
                copy.write_row(row)
        cur.execute(self._upsert_staged)
        cur.execute(_STAGE_CLEAR)

    def delete(self, key: str) -> bool:
        self._cur.execute(self._delete, (check_key(key),))
        return self._cur.rowcount > 0

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._cur.execute(self._delete_many, (list(keys),))

    def clear(self) -> None:
        self._cur.execute(f"DELETE FROM {_doc(self._name)}".encode())
        self._cur.execute("DELETE FROM millstream_table_offsets WHERE table_name=%s",
                          (self._name,))

    def offsets(self) -> dict[StreamPartition, int]:
        return _offsets(self._cur, self._name)

    def set_offsets(self, offsets: Mapping[StreamPartition, int]) -> None:
        if offsets:
            self._cur.executemany(
                "INSERT INTO millstream_table_offsets (table_name, stream, partition, "
                "next_offset) VALUES (%s, %s, %s, %s) ON CONFLICT (table_name, stream, "
                "partition) DO UPDATE SET next_offset=EXCLUDED.next_offset",
                [(self._name, sp[0], sp[1], off) for sp, off in offsets.items()])

    def set_feed(self, stream: str | None) -> None:
        self._cur.execute("UPDATE millstream_tables SET feed=%s WHERE name=%s",
                          (stream, self._name))


def _offsets(cur: psycopg.Cursor[Any], name: str) -> dict[StreamPartition, int]:
    cur.execute("SELECT stream, partition, next_offset FROM millstream_table_offsets "
                "WHERE table_name=%s ORDER BY stream, partition", (name,))
    return {StreamPartition(s, p): o for s, p, o in cur.fetchall()}


class _Export:
    """A repeatable-read transaction on a connection of its own, rows from a server cursor."""

    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        self._conn = conn
        self._name = name
        with conn.cursor() as cur:
            cur.execute("SELECT feed FROM millstream_tables WHERE name=%s", (name,))
            row = cur.fetchone()
            if row is None:
                raise NotFoundError(f"table {name!r} does not exist")
            self.feed: str | None = row[0]
            cur.execute("SELECT field FROM millstream_table_indexes WHERE table_name=%s "
                        "ORDER BY field", (name,))
            self.indexes = tuple(r[0] for r in cur.fetchall())
            self.offsets = _offsets(cur, name)
            cur.execute(f"SELECT count(*) FROM {_doc(name)}".encode())
            counted = cur.fetchone()
            self.documents: int = int(counted[0]) if counted else 0

    def rows(self) -> Iterator[tuple[str, str]]:
        with self._conn.cursor(name="millstream_export") as cur:
            cur.itersize = _CHUNK
            cur.execute(f"SELECT key, doc::text FROM {_doc(self._name)} ORDER BY key".encode())
            yield from cur


class PostgresTable(TableBase):
    """One table of a ``PostgresTables`` backend."""

    def __init__(self, backend: PostgresTables, name: str) -> None:
        super().__init__(name)
        self._backend = backend

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._backend.read(sql, args, f"reading table {self._name!r}", self._name)

    def _get_json(self, key: str) -> str | None:
        rows = self._read(f"SELECT doc::text FROM {_doc(self._name)} WHERE key=%s", (key,))
        return rows[0][0] if rows else None

    def _scan_json(self, lower: str, inclusive: bool, upper: str | None, limit: int | None
                   ) -> list[tuple[str, str]]:
        sql = (f"SELECT key, doc::text FROM {_doc(self._name)} "
               f"WHERE key {'>=' if inclusive else '>'} %s")
        args: list[Any] = [lower]
        if upper is not None:
            sql += " AND key < %s"
            args.append(upper)
        sql += " ORDER BY key LIMIT %s"
        args.append(limit)
        return [(k, d) for k, d in self._read(sql, args)]

    def _query_json(self, where: Sequence[tuple[str, str, Scalar]], limit: int | None
                    ) -> list[tuple[str, str]]:
        conditions = [f"doc -> '{field}' = %s::jsonb" for field, _, _ in where]
        args: list[Any] = [json.dumps(value) for _, _, value in where]
        args.append(limit)
        sql = (f"SELECT key, doc::text FROM {_doc(self._name)} WHERE {' AND '.join(conditions)} "
               "ORDER BY key LIMIT %s")
        return [(k, d) for k, d in self._read(sql, args)]

    def count(self) -> int:
        return int(self._read(f"SELECT count(*) FROM {_doc(self._name)}", ())[0][0])

    def offsets(self) -> dict[StreamPartition, int]:
        rows = self._read("SELECT stream, partition, next_offset FROM millstream_table_offsets "
                          "WHERE table_name=%s ORDER BY stream, partition", (self._name,))
        return {StreamPartition(s, p): o for s, p, o in rows}

    def info(self) -> TableInfo:
        with self.export() as view:
            return TableInfo(self._name, view.documents, view.indexes, view.feed, view.offsets)

    @contextmanager
    def transaction(self) -> Iterator[_Writes]:
        with self._backend._write(f"writing table {self._name!r}", self._name) as cur:
            # the table's catalog row, locked until the end: transactions on one table run
            # one after another, each seeing what the previous committed (as on SQLite)
            cur.execute("SELECT 1 FROM millstream_tables WHERE name=%s FOR UPDATE",
                        (self._name,))
            if cur.fetchone() is None:
                raise NotFoundError(f"table {self._name!r} does not exist (it was dropped)")
            yield _Writes(cur, self._name)

    @contextmanager
    def export(self) -> Iterator[_Export]:
        url = self._backend.url
        doing = f"reading table {self._name!r}"
        conn = self._backend.connect(autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            yield _Export(conn, self._name)
        except psycopg.Error as exc:
            raise _translate(exc, url, doing, self._name) from exc
        finally:
            conn.close()
