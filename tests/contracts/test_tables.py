"""Tables contract: documents, scans, queries, transactions, offsets and exports, through the
``Tables``/``Table`` Protocols only, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from millstream import (
    AlreadyExistsError,
    ClosedError,
    InvalidRequestError,
    NotFoundError,
    StreamPartition,
)
from millstream.tables import Tables, open_tables


@pytest.fixture(params=["sqlite", "postgres"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    if request.param == "sqlite":
        url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    else:
        url = request.getfixturevalue("pg_url")
    with open_tables(url) as handle:
        yield handle


class Order(BaseModel):
    id: str
    status: str
    total: float
    paid: bool = False
    note: str | None = None


def test_put_get_replace_delete(tables: Tables) -> None:
    t = tables.create_table("orders")
    assert t.get("o1") is None
    t.put("o1", {"id": "o1", "status": "new", "total": 9.5, "items": [1, 2], "x": {"y": None}})
    assert t.get("o1") == {"id": "o1", "status": "new", "total": 9.5, "items": [1, 2],
                           "x": {"y": None}}
    t.put("o1", Order(id="o1", status="paid", total=10, paid=True))
    got = t.get("o1", Order)
    assert got == Order(id="o1", status="paid", total=10.0, paid=True)
    assert t.count() == 1
    assert t.delete("o1") is True
    assert t.delete("o1") is False
    assert t.get("o1") is None and t.count() == 0


def test_scan_orders_by_code_point_with_prefix_limit_and_paging(tables: Tables) -> None:
    t = tables.create_table("keys")
    keys = ["b", "a", "ab", "a\u00e9", "a\U0001f600", "aZ", "a/2", "a/10", "c", "\u00e9", "Z"]
    for k in keys:
        t.put(k, {"k": k})
    everything = [k for k, _ in t.scan()]
    assert everything == sorted(keys)  # Python sorts str by code point
    assert [k for k, _ in t.scan("a")] == sorted(k for k in keys if k.startswith("a"))
    assert [k for k, _ in t.scan("a/")] == ["a/10", "a/2"]
    assert [k for k, _ in t.scan("a", limit=3)] == sorted(k for k in keys if k[0] == "a")[:3]
    assert t.scan("a", limit=0) == []
    assert t.scan("nothing") == []
    pages, after = [], None
    while page := t.scan("a", after=after, limit=2):
        pages.append([k for k, _ in page])
        after = page[-1][0]
    assert [k for p in pages for k in p] == sorted(k for k in keys if k.startswith("a"))
    assert all(len(p) <= 2 for p in pages)
    assert [d for _, d in t.scan("b")] == [{"k": "b"}]


def test_scan_and_query_give_models(tables: Tables) -> None:
    t = tables.create_table("orders", indexes=["status"])
    t.put("o1", Order(id="o1", status="new", total=1))
    t.put("o2", Order(id="o2", status="paid", total=2))
    assert t.scan(model=Order) == [("o1", Order(id="o1", status="new", total=1)),
                                   ("o2", Order(id="o2", status="paid", total=2))]
    assert t.query({"status": "paid"}, model=Order) == [
        ("o2", Order(id="o2", status="paid", total=2))]


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "unindexed"])
def test_query_is_json_equality_on_top_level_fields(tables: Tables, indexed: bool) -> None:
    fields = ["status", "n", "flag", "note"] if indexed else []
    t = tables.create_table("docs", indexes=fields)
    docs = {
        "a": {"status": "new", "n": 1, "flag": True, "note": None},
        "b": {"status": "new", "n": 1.0, "flag": 1, "note": "x"},
        "c": {"status": "paid", "n": "1", "flag": False},
        "d": {"status": "new", "n": 2, "flag": 0, "nested": {"status": "new"}},
        "e": {"other": "new"},
    }
    for key, doc in docs.items():
        t.put(key, doc)

    def keys(**where: object) -> list[str]:
        return [k for k, _ in t.query(where)]  # type: ignore[arg-type]

    assert keys(status="new") == ["a", "b", "d"]
    assert keys(n=1) == ["a", "b"]          # 1 equals 1.0 …
    assert keys(n="1") == ["c"]             # … but not "1"
    assert keys(flag=True) == ["a"]         # true is not 1
    assert keys(flag=1) == ["b"]
    assert keys(flag=False) == ["c"]
    assert keys(note=None) == ["a"]         # null, not missing
    assert keys(status="new", n=2) == ["d"]
    assert keys(status="gone") == []
    assert [k for k, _ in t.query({"status": "new"}, limit=2)] == ["a", "b"]
    assert t.query({"status": "new"})[0][1] == docs["a"]


def test_indexes_are_declared_and_added(tables: Tables) -> None:
    t = tables.create_table("ix", indexes=["b"])
    t.put("k", {"a": 1, "b": 2})
    assert t.info().indexes == ("b",)
    tables.create_index("ix", "a")
    tables.create_index("ix", "a")  # idempotent
    again = tables.ensure_table("ix", indexes=["c"])
    assert again.info().indexes == ("a", "b", "c")
    assert [k for k, _ in again.query({"a": 1})] == ["k"]


def test_catalog_create_list_drop(tables: Tables) -> None:
    assert tables.list_tables() == []
    tables.create_table("b")
    tables.create_table("a.x-1_y")
    with pytest.raises(AlreadyExistsError):
        tables.create_table("b")
    assert tables.list_tables() == ["a.x-1_y", "b"]
    b = tables.table("b")
    b.put("k", {"v": 1})
    tables.drop_table("b")
    assert tables.list_tables() == ["a.x-1_y"]
    with pytest.raises(NotFoundError, match="'b'"):
        tables.table("b")
    with pytest.raises(NotFoundError):
        tables.drop_table("b")
    with pytest.raises(NotFoundError):
        b.get("k")
    with pytest.raises(NotFoundError):
        b.put("k", {"v": 2})
    assert tables.ensure_table("b").count() == 0  # recreated empty


@pytest.mark.parametrize("call", [
    lambda t: t.put("", {"a": 1}),
    lambda t: t.put("a\x00b", {"a": 1}),
    lambda t: t.put("k", [1, 2]),
    lambda t: t.put("k", {"a": float("nan")}),
    lambda t: t.put("k", {"a": object()}),
    lambda t: t.query({}),
    lambda t: t.query({"a.b": 1}),
    lambda t: t.query({"a": [1]}),
    lambda t: t.query({"a": {"b": 1}}),
    lambda t: t.scan(limit=-1),
    lambda t: t.get(""),
], ids=["empty-key", "nul-key", "list-doc", "nan", "object", "no-condition", "dotted-field",
        "list-value", "dict-value", "negative-limit", "get-empty-key"])
def test_bad_requests_are_refused(tables: Tables, call: object) -> None:
    t = tables.create_table("t")
    with pytest.raises(InvalidRequestError):
        call(t)  # type: ignore[operator]
    assert t.count() == 0


@pytest.mark.parametrize("name", ["", "a b", "x" * 49, "..", "ü"])
def test_bad_table_names_are_refused(tables: Tables, name: str) -> None:
    with pytest.raises(InvalidRequestError):
        tables.create_table(name)


def test_a_transaction_applies_documents_and_offsets_together(tables: Tables) -> None:
    t = tables.create_table("fed")
    a0, a1 = StreamPartition("orders", 0), StreamPartition("orders", 1)
    with t.transaction() as tx:
        tx.put_json([("k1", '{"v": 1}'), ("k2", '{"v": 2}')])
        tx.put("k3", {"v": 3})
        tx.set_offsets({a0: 10, a1: 4})
        tx.set_feed("orders")
    assert t.offsets() == {a0: 10, a1: 4}
    assert t.info().feed == "orders"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), t.transaction() as tx:
        tx.delete_many(["k1", "k2"])
        tx.put("k4", {"v": 4})
        tx.set_offsets({a0: 12})
        assert tx.offsets() == {a0: 12, a1: 4}
        raise Boom
    assert [k for k, _ in t.scan()] == ["k1", "k2", "k3"]
    assert t.offsets() == {a0: 10, a1: 4}

    with t.transaction() as tx:
        tx.delete_many(["k1", "absent"])
        assert tx.delete("k2") is True
        tx.set_offsets({a0: 12})
    assert [k for k, _ in t.scan()] == ["k3"]
    assert t.offsets() == {a0: 12, a1: 4}
    with t.transaction() as tx:
        tx.clear()
    assert t.count() == 0 and t.offsets() == {}


def test_put_json_stores_any_json_text_and_the_last_document_of_a_key(tables: Tables) -> None:
    t = tables.create_table("texts", indexes=["v"])
    awkward = {"v": "tab\there\nnew line \\ back\\slash \"quoted\" \u00e9\u65e5 \\N",
               "nested": {"list": [1, 2.5, None, True]}}
    with t.transaction() as tx:
        tx.put_json([("a", json.dumps(awkward)), ("b", '{"v": 1}'), ("a", '{"v": 2}'),
                     ("c\tkey", json.dumps(awkward))])
    with t.transaction() as tx:  # a second call in one transaction, as a feed's batch makes
        tx.put_json([("b", '{"v": 3}')])
        tx.put_json([("d", '{"v": 4}')])
    assert dict(t.scan()) == {"a": {"v": 2}, "b": {"v": 3}, "c\tkey": awkward, "d": {"v": 4}}
    assert [k for k, _ in t.query({"v": 3})] == ["b"]


def test_an_export_is_one_consistent_view(tables: Tables) -> None:
    t = tables.create_table("snap", indexes=["v"])
    sp = StreamPartition("s", 0)
    with t.transaction() as tx:
        tx.put_json([(f"k{i:04d}", f'{{"v": {i}}}') for i in range(2500)])
        tx.set_offsets({sp: 2500})
        tx.set_feed("s")
    with t.export() as view:
        t.put("k9999", {"v": -1})  # written while the view is open: not in it
        with t.transaction() as tx:
            tx.delete("k0000")
            tx.set_offsets({sp: 2502})
        rows = list(view.rows())
        assert (view.documents, view.offsets, view.feed, view.indexes) == (
            2500, {sp: 2500}, "s", ("v",))
    assert [k for k, _ in rows] == [f"k{i:04d}" for i in range(2500)]
    assert rows[7][1].replace(" ", "") == '{"v":7}'
    info = t.info()
    assert (info.documents, info.offsets) == (2500, {sp: 2502})


def test_two_handles_see_each_others_writes(tables: Tables) -> None:
    t = tables.create_table("shared")
    with open_tables(tables.url) as other:
        o = other.table("shared")
        t.put("a", {"n": 1})
        assert o.get("a") == {"n": 1}
        o.delete("a")
        assert t.get("a") is None


def test_closed_backend_is_refused(tables: Tables) -> None:
    t = tables.create_table("c")
    tables.close()
    tables.close()  # idempotent
    with pytest.raises(ClosedError):
        t.get("k")
    with pytest.raises(ClosedError):
        tables.list_tables()
