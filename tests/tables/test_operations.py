"""The tables operations the CLI and the console share: status against the feed, conditions,
queries that say why nothing matched, and snapshot headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import millstream
from millstream import Retention, StreamPartition, Streams
from millstream.errors import InvalidRequestError, NotFoundError
from millstream.files import open_files
from millstream.operations._tables import (
    find_snapshot,
    parse_condition,
    parse_value,
    query_table,
    snapshot_headers,
    table_status,
    table_statuses,
)
from millstream.tables import Tables, open_tables, write_snapshot
from millstream.tables._materialize import Materializer
from tests.tables.helpers import produce_feed, replay


@pytest.fixture
def streams() -> Iterator[Streams]:
    with millstream.open_streams() as handle:
        handle.admin().create_stream("orders", partitions=2, retention=Retention(compact=True))
        produce_feed(handle, "orders", 300, keys=50)
        yield handle


@pytest.fixture
def tables(streams: Streams) -> Iterator[Tables]:
    with open_tables() as handle, \
            Materializer(streams, handle, "orders", "orders", indexes=["colour"]) as m:
        m.catch_up()
        yield handle


def test_status_says_how_far_behind_the_feed_a_table_is(streams: Streams,
                                                        tables: Tables) -> None:
    status = table_status(tables, streams, "orders")
    assert status.behind == 0 and status.problem is None
    assert sum(status.ends.values()) == 300
    produce_feed(streams, "orders", 7, keys=50, seed=2, start=300)
    assert table_status(tables, streams, "orders").behind == 7
    tables.create_table("loose")
    assert [(s.info.name, s.behind) for s in table_statuses(tables, streams)] == [
        ("loose", None), ("orders", 7)]
    assert table_status(tables, None, "orders").behind is None  # no streams: not known
    streams.admin().delete_stream("orders")
    gone = table_status(tables, streams, "orders")
    assert (gone.behind, gone.problem) == (None, "stream gone")


def test_conditions_read_json_else_text_and_refuse_lists_and_bad_fields() -> None:
    assert parse_condition("n=5") == ("n", 5)
    assert parse_condition('n="5"') == ("n", "5")
    assert parse_condition("colour=red") == ("colour", "red")
    assert parse_condition("paid=true") == ("paid", True)
    assert parse_value("null") is None
    with pytest.raises(InvalidRequestError, match=r"'n=\[1\]'.*not a JSON list or object"):
        parse_condition("n=[1]")
    with pytest.raises(InvalidRequestError, match="field '1x' is not a field name"):
        parse_condition("1x=3")
    with pytest.raises(InvalidRequestError, match="'colour' is not FIELD=VALUE"):
        parse_condition("colour")


def test_a_query_returns_the_matching_documents_or_says_why_none_matched(
        streams: Streams, tables: Tables) -> None:
    expected = replay(streams, "orders")
    table = tables.table("orders")
    reds = sorted(k for k, d in expected.items() if d["colour"] == "red")
    answer = query_table(table, {"colour": "red"}, limit=1000)
    assert [k for k, _ in answer.rows] == reds and not answer.limited and answer.hint is None
    cut = query_table(table, {"colour": "red"}, limit=3)
    assert [k for k, _ in cut.rows] == reds[:3] and cut.limited
    unknown = query_table(table, {"color": "red"}, limit=10)
    assert unknown.rows == [] and unknown.hint == (
        f"no document of table 'orders' has a field 'color' (in the first {len(expected)}); "
        "its documents have: colour, id, n")
    wrong = query_table(table, {"n": "12"}, limit=10)
    assert wrong.hint is not None and wrong.hint.startswith(
        "field 'n' holds a number (e.g. ") and "not a string like \"12\"" in wrong.hint
    assert query_table(table, {"colour": "mauve"}, limit=10).hint is None  # just no match


def test_snapshot_headers_list_a_tables_snapshots_newest_first(streams: Streams,
                                                               tables: Tables) -> None:
    files = open_files()
    with pytest.raises(NotFoundError, match="no snapshot of table 'orders'"):
        find_snapshot(files, "orders", None)
    first = write_snapshot(tables.table("orders"), files, clock=lambda: 1_000.0)
    tables.table("orders").put("extra", {"x": 1})
    second = write_snapshot(tables.table("orders"), files, clock=lambda: 2_000.0)
    headers = snapshot_headers(files, "orders")
    assert [(h.ref.url, h.documents, h.created_ms) for h in headers] == [
        (second.ref.url, first.documents + 1, 2_000_000),
        (first.ref.url, first.documents, 1_000_000)]
    assert headers[0].offsets == first.offsets and headers[0].feed == "orders"
    assert sum(headers[0].offsets.values()) == 300
    assert StreamPartition("orders", 0) in headers[0].offsets
    assert find_snapshot(files, "orders", None) == second.ref
    assert find_snapshot(files, "orders", first.ref.url) == first.ref
