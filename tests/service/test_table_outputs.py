"""Tables as declared outputs: ``outputs=[app.table(...)]`` makes the runtime keep the table
equal to its stream replayed, fed in batches after the service's commits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from millstream import InvalidRequestError, StreamPartition
from millstream.observe import topology
from millstream.runtime import ServiceRunner
from millstream.service import App, TableOutput
from millstream.testing import TestPlatform
from tests.support.table_apps import OrderRow, app, expected, make_orders


def refusal(declare: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        declare()
    return str(caught.value)


def test_a_table_output_declares_its_changelog_stream_as_the_service_output() -> None:
    handle = app.tables["orders"]
    assert isinstance(handle, TableOutput)
    assert (handle.name, handle.model, handle.key, handle.stream, handle.indexes) == (
        "orders", OrderRow, "id", "orders", ("customer",))
    spec = app.get("ledger")
    assert spec.outputs == ("orders", "customers")
    assert [t.name for t in spec.tables] == ["orders", "customers"]
    assert app.streams["orders"].codec.description == "OrderRow v1"
    assert app.streams["customers"].codec.description == "CustomerRow v1"
    # declaring it again with the same settings gives the same handle
    assert app.table("orders", OrderRow, key="id", indexes=["customer"]) is handle


def test_declarations_a_table_output_cannot_honour_are_refused() -> None:
    shop = App("shop")
    assert refusal(lambda: shop.table("rows", OrderRow, key="number")) == (
        "table 'rows': key field 'number' is not a field of OrderRow (its fields: id, "
        "customer, amount, doubled)")
    assert "must be a pydantic model class, not <class 'dict'>" in refusal(
        lambda: shop.table("rows", dict))
    rows = shop.table("rows", OrderRow, key="id")
    assert refusal(lambda: shop.table("rows", OrderRow, key="customer")).startswith(
        "table 'rows' is already declared as TableOutput(name='rows'")
    assert refusal(lambda: shop.service("reader", inputs=[rows])(lambda v: None)) == (
        "service 'reader' lists table 'rows' as an input; a table is an output (read its "
        "stream 'rows')")
    theirs = App("other").table("ledger", OrderRow, key="id")
    assert refusal(lambda: shop.service("copy", inputs=["rows"], outputs=[theirs])(
        lambda v: v)) == ("service 'copy' lists table 'ledger', which is not this app's; "
                          "declare it with app.table(...)")
    assert "copy" not in shop.services


def test_the_runtime_keeps_each_table_equal_to_what_the_service_emitted() -> None:
    sent = make_orders(1000)
    with TestPlatform(app) as platform:
        platform.send_many("orders-in", sent, key=lambda o: o.customer)
        stats = platform.run_until_idle("ledger")
        assert stats.records_in == 1000 and stats.records_out == 2000
        by_id, latest = expected(sent)
        orders = platform.tables.table("orders")
        customers = platform.tables.table("customers")
        assert orders.count() == 1000 and customers.count() == 97
        assert dict(orders.scan()) == by_id
        assert dict(customers.scan()) == latest
        assert orders.get("o000007", OrderRow) == OrderRow(
            id="o000007", customer="c049", amount=7, doubled=14)
        # the changelog records are keyed by the row's key field
        assert {r.key for r in platform.records("customers")} == {
            k.encode() for k in latest}
        assert [r.key for r in platform.records("orders")].count(b"o000007") == 1
        # the tables reflect their streams up to the end, and name them as their feeds
        for name, table in (("orders", orders), ("customers", customers)):
            info = table.info()
            assert info.feed == name
            assert info.offsets == {
                StreamPartition(name, p.partition): p.end
                for p in platform.streams.admin().describe_stream(name).partitions}
        assert orders.info().indexes == ("customer",)
        assert len(orders.query({"customer": "c049"})) == len(
            [o for o in sent if o.customer == "c049"])


def test_rows_sent_before_a_restart_reach_the_table_when_the_service_starts() -> None:
    """Rows in the changelog that the table does not reflect (a crash between a commit and
    its table batch leaves them so) are applied when the service starts, before any new
    input arrives."""
    sent = make_orders(300)
    with TestPlatform(app) as platform:
        platform.send_many("orders-in", sent, key=lambda o: o.customer)
        platform.run_until_idle("ledger")
        orders = platform.tables.table("orders")
        with orders.transaction() as tx:  # the table one batch behind: offsets and rows
            tx.clear()
        assert orders.count() == 0
        platform.run_until_idle("ledger")
        assert dict(orders.scan()) == expected(sent)[0]


class Tally(BaseModel):
    word: str
    count: int


def test_a_row_emitted_under_another_key_than_its_key_field_goes_to_the_exceptions() -> None:
    words = App("words", partitions=1)
    tallies = words.table("tallies", Tally, key="word")

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally, ctx: Any) -> None:
        ctx.emit("tallies", t, key="elsewhere" if t.word == "bad" else None)

    with TestPlatform(words) as platform:
        platform.send_many("text", [Tally(word="a", count=1), Tally(word="bad", count=2)],
                           key="k")
        stats = platform.run_until_idle("tally")
        assert stats.exceptions == 1
        [failure] = platform.exceptions()
        assert failure.stage == "encode"
        assert failure.message == ("a row of table 'tallies' was emitted with key "
                                   "'elsewhere', not its word 'bad'")
        assert dict(platform.tables.table("tallies").scan()) == {
            "a": {"word": "a", "count": 1}}


def test_a_returned_row_is_keyed_by_its_key_field_not_by_the_input_key() -> None:
    words = App("words", partitions=2)
    tallies = words.table("tallies", Tally, key="word")

    @words.service(inputs={"text": Tally}, outputs=[tallies])
    def tally(t: Tally) -> Tally:
        return t

    with TestPlatform(words) as platform:
        sent = [Tally(word=w, count=i) for i, w in enumerate(["a", "b", "a", "", "c"])]
        platform.send_many("text", sent, key="same-input-key")
        stats = platform.run_until_idle("tally")
        assert (stats.records_out, stats.exceptions) == (4, 1)
        assert [r.key for r in platform.records("tallies")
                if r.key == b"a"] == [b"a", b"a"]
        assert sorted(r.key for r in platform.records("tallies")) == [b"a", b"a", b"b", b"c"]
        [failure] = platform.exceptions()
        assert (failure.stage, failure.message) == (
            "encode", "table 'tallies': a Tally row has no 'word' (''); every row needs its key")
        assert dict(platform.tables.table("tallies").scan()) == {
            "a": {"word": "a", "count": 2}, "b": {"word": "b", "count": 1},
            "c": {"word": "c", "count": 4}}


def test_a_service_with_a_table_output_needs_a_tables_backend() -> None:
    with TestPlatform(app) as platform:
        message = refusal(lambda: ServiceRunner(app, "ledger", platform.streams))
    assert message == ("service 'ledger' writes table(s) orders, customers but was given no "
                       "tables backend; pass tables=open_tables() (millstream run and up do)")


def test_the_topology_shows_the_tables_a_service_writes() -> None:
    topo = topology(app)
    stores = {n.name: n.detail for n in topo.of_kind("store")}
    assert stores == {"tables:orders": "table of OrderRow, fed from orders",
                      "tables:customers": "table of CustomerRow, fed from customers"}
    assert topo.ends("service:ledger", "uses", incoming=False) == [
        "tables:orders", "tables:customers"]
    assert topo.ends("service:ledger", "output", incoming=False) == ["orders", "customers"]
