"""``millstream.tables`` is the public face of tables: its ``__all__`` is pinned here, and the
materializer and rebuild are offered there (an app never imports ``millstream.tables.*``)."""

from __future__ import annotations

import millstream.tables
from millstream.tables import _materialize as materialize

TABLES_API = [
    "Document",
    "Export",
    "Materializer",
    "MaterializerStatistics",
    "SCHEMES",
    "Scalar",
    "Table",
    "TableInfo",
    "Tables",
    "Writes",
    "check_tables",
    "open_tables",
    "rebuild",
]


def test_all_is_pinned() -> None:
    assert sorted(millstream.tables.__all__) == TABLES_API


def test_the_materializer_and_rebuild_are_the_implementation_s() -> None:
    namespace: dict[str, object] = {}
    exec("from millstream.tables import *", namespace)
    assert namespace["Materializer"] is materialize.Materializer
    assert namespace["MaterializerStatistics"] is materialize.MaterializerStatistics
    assert namespace["rebuild"] is materialize.rebuild
