"""Tables: documents by key, fed from streams. Open a backend by URL.

``sqlite:///abs/path/tables.db`` (the default, under ``MILLSTREAM_HOME``) keeps every table in
one SQLite file; ``postgresql://user@host:port/db`` uses PostgreSQL (JSONB) and needs the
``postgres`` extra. ``open_tables`` opens one and ``check_tables`` checks it works
(``millstream doctor``), through one table of backends.

A ``Materializer`` feeds a table from a stream; ``rebuild`` recreates one by replaying it;
``write_snapshot`` and ``restore_snapshot`` copy a table to the file store and back.
"""

from __future__ import annotations

from millstream.tables._base import Document, Export, Scalar, Table, TableInfo, Tables, Writes
from millstream.tables._materialize import Materializer, MaterializerStatistics, rebuild
from millstream.tables._open import check_tables, open_tables
from millstream.tables._snapshot import SnapshotInfo, restore_snapshot, write_snapshot

__all__ = [
    "Document",
    "Export",
    "Materializer",
    "MaterializerStatistics",
    "Scalar",
    "SnapshotInfo",
    "Table",
    "TableInfo",
    "Tables",
    "Writes",
    "check_tables",
    "open_tables",
    "rebuild",
    "restore_snapshot",
    "write_snapshot",
]
