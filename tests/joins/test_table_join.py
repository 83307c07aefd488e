"""The stream–table join through the runtime (``TestPlatform``, embedded log): exact outputs,
inner joins, deletions, co-partitioning refused three ways, and re-keying."""

from __future__ import annotations

from pathlib import Path

import pytest

import millstream
from millstream.errors import InvalidRequestError
from millstream.runtime import ServiceRunner
from millstream.service import App
from millstream.testing import TestPlatform
from tests.joins.apps import Item, Line, Order, line, shop


def lines(platform: TestPlatform) -> list[tuple[int, str | None, bytes | None]]:
    return sorted((Line.model_validate_json(r.value or b"").order,
                   Line.model_validate_json(r.value or b"").title, r.key)
                  for r in platform.records("lines"))


def test_each_record_gets_the_current_row_of_its_key() -> None:
    app = shop()
    with TestPlatform(app) as platform:
        platform.send("items", Item(title="Apple"), key="a")
        platform.send("items", Item(title="Banana"), key="b")
        for order, item in [(1, "a"), (2, "b"), (3, "c")]:
            platform.send("orders", Order(id=order, item=item), key=item)
        platform.run_until_idle("titles")
        assert lines(platform) == [(1, "Apple", b"a"), (2, "Banana", b"b"), (3, None, b"c")]

        platform.send("items", Item(title="Apricot"), key="a")
        platform.run_until_idle("titles")
        platform.send("orders", Order(id=4, item="a"), key="a")
        platform.run_until_idle("titles")
        assert lines(platform)[-1] == (4, "Apricot", b"a")
        assert platform.exceptions() == []


def test_a_join_started_on_existing_data_sees_every_row_already_written() -> None:
    # the orders come first on their stream and the service reads both streams interleaved:
    # the table side is loaded before a partition's first record, so no row is missed
    app = shop()
    with TestPlatform(app) as platform:
        for order in range(200):
            key = "abcd"[order % 4]
            platform.send("orders", Order(id=order, item=key), key=key)
        for key in "abcd":
            platform.send("items", Item(title=key.upper()), key=key)
        platform.run_until_idle("titles")
        assert lines(platform) == [(o, "abcd"[o % 4].upper(), "abcd"[o % 4].encode())
                                   for o in range(200)]
        # the rows are loaded from the table side, not checkpointed: the state stays empty
        assert platform.state_by_partition("titles") == {0: {}, 1: {}}


def test_an_inner_join_drops_a_record_without_a_row_and_reports_it_when_asked() -> None:
    app = shop(inner=True, report_unmatched=True)
    with TestPlatform(app) as platform:
        platform.send("items", Item(title="Apple"), key="a")
        platform.send("orders", Order(id=1, item="a"), key="a")
        platform.send("orders", Order(id=2, item="z"), key="z")
        stats = platform.run_until_idle("titles")
        assert lines(platform) == [(1, "Apple", b"a")]
        # reported as asked, by design: an exception record, not an error of the service
        assert (stats.exceptions, stats.errors) == (1, 0)
        (reported,) = platform.exceptions("titles")
        assert reported.document["stage"] == "join"
        assert reported.error_type == "millstream.service.UnmatchedJoinRecord"
        assert reported.message == (
            "no row of key b'z' in the table side of join 'titles' when this record came "
            "(an inner join drops it)")
        assert (reported.input["stream"], reported.input["offset"]) == ("orders", 1)


def test_a_tombstone_on_the_table_deletes_the_row() -> None:
    app = App("shop", partitions=2)
    orders = app.stream("orders", Order)
    items = app.stream("items", dict)  # JSON: its records can be tombstones
    out = app.stream("lines", Line)
    app.join_table("titles", orders, items,
                   lambda o, i: Line(order=o.id, title=i["title"] if i else None), output=out)
    with TestPlatform(app) as platform:
        platform.send("items", {"title": "Apple"}, key="a")
        platform.send("orders", Order(id=1, item="a"), key="a")
        platform.run_until_idle("titles")
        platform.send("items", None, key="a")
        platform.run_until_idle("titles")
        platform.send("orders", Order(id=2, item="a"), key="a")
        platform.run_until_idle("titles")
        assert [v.title for v in platform.values(out)] == ["Apple", None]


def test_inputs_declared_with_different_partition_counts_are_refused() -> None:
    app = App("shop", partitions=2)
    orders = app.stream("orders", Order)
    items = app.stream("items", Item, partitions=3)
    with pytest.raises(InvalidRequestError) as refused:
        app.join_table("titles", orders, items, line, output=app.stream("lines", Line))
    assert str(refused.value) == (
        "join 'titles' reads 'orders' (2 partitions) and 'items' (3 partitions): a join "
        "meets the records of a key in one partition number, so its inputs must have the "
        "same partition count; declare them alike, or re-key it through an intermediate "
        "stream: app.rekey('items-rekey', 'items', by=lambda value: ..., "
        "into=app.stream('items-by-key', ..., partitions=2))")
    assert "titles" not in app.services


def test_inputs_with_different_partition_counts_on_the_backend_are_refused_at_start(
        tmp_path: Path) -> None:
    app = shop()  # declared with 2 partitions each
    with millstream.open_streams(f"local:{tmp_path}") as streams:
        streams.admin().ensure_stream("items", 3)  # made before, by something else
        runner = ServiceRunner(app, "titles", streams)
        with pytest.raises(InvalidRequestError) as refused:
            runner.run(until=lambda _: True)
        assert str(refused.value) == (
            "join 'titles' cannot start: on the backend, 'orders' has 2 partitions and "
            "'items' has 3 (a stream made before keeps its count, whatever the app "
            "declares); a join meets the records of a key in one partition number, so its "
            "inputs must have the same count: re-key it through an intermediate stream: "
            "app.rekey('items-rekey', 'items', by=lambda value: ..., "
            "into=app.stream('items-by-key', ..., partitions=2))")


def test_a_record_whose_key_belongs_in_another_partition_fails_naming_app_rekey() -> None:
    app = shop()
    with TestPlatform(app) as platform:
        platform.send("items", Item(title="Apple"), key="a")
        # "a" partitions to 0 of 2; a producer that chose partition 1 itself
        data, headers = app.streams["orders"].codec.encode(Order(id=1, item="a"))
        with platform.streams.open_producer() as producer:
            producer.send("orders", data, key=b"a", partition=1, headers=headers).wait()
        platform.run_until_idle("titles")
        assert platform.records("lines") == []
        (failed,) = platform.exceptions("titles")
        assert failed.document["stage"] == "handle"
        assert failed.message == (
            "record orders/1@0 has key b'a', which belongs in partition 0 of 2, not 1: join "
            "'titles' needs its inputs keyed by the join key with the default partitioner "
            "(was it sent keyed by something else, or to a chosen partition?); re-key it "
            "through an intermediate stream: app.rekey('orders-rekey', 'orders', by=lambda "
            "value: ..., into='orders-by-key')")


def test_rekeying_through_an_intermediate_stream_makes_a_stream_joinable() -> None:
    app = App("shop", partitions=2)
    orders = app.stream("orders", Order)  # keyed by order id: not joinable with items
    items = app.stream("items", Item)
    by_item = app.rekey("orders-by-item", orders, by=lambda order: order.item,
                        into="orders-by-item")
    app.join_table("titles", by_item, items, line, output=app.stream("lines", Line))
    with TestPlatform(app) as platform:
        platform.send("items", Item(title="Apple"), key="a")
        platform.send("items", Item(title="Banana"), key="b")
        for order, item in [(1, "a"), (2, "b"), (3, "a")]:
            platform.send("orders", Order(id=order, item=item), key=str(order))
        platform.run_until_idle("orders-by-item")
        platform.run_until_idle("titles")
        assert lines(platform) == [(1, "Apple", b"a"), (2, "Banana", b"b"), (3, "Apple", b"a")]
        assert [r.key for r in platform.records("orders-by-item")
                if Order.model_validate_json(r.value or b"").id == 1] == [b"a"]
        assert platform.exceptions() == []


class Titled(Item):
    sku: str


def test_a_table_a_service_writes_can_be_the_table_side_as_declared() -> None:
    app = App("shop", partitions=2)
    orders = app.stream("orders", Order)
    catalog = app.table("catalog", Titled, key="sku")  # its changelog stream: "catalog"
    app.join_table("titles", orders, catalog,
                   lambda o, t: Line(order=o.id, title=t.title if t else None),
                   output=app.stream("lines", Line))
    assert app.services["titles"].inputs == ("orders", "catalog")
    with TestPlatform(app) as platform:
        platform.send("catalog", Titled(sku="a", title="Apple"), key="a")
        platform.send("orders", Order(id=1, item="a"), key="a")
        platform.send("orders", Order(id=2, item="b"), key="b")
        platform.run_until_idle("titles")
        assert lines(platform) == [(1, "Apple", b"a"), (2, None, b"b")]


_FAIL_ONCE = {"on": True}


def _flaky_line(order: Order, item: Item | None) -> Line:
    if _FAIL_ONCE["on"] and order.id == 1:
        raise RuntimeError("downstream hiccup")
    return Line(order=order.id, title=item.title if item else None)


def test_a_replayed_order_first_in_a_run_gets_its_partitions_rows() -> None:
    from millstream.operations._replay import list_exceptions, replay
    from millstream.streams._partitioner import partition_for_key

    key = next(k for k in ("k1", "k2", "k3", "k4") if partition_for_key(k.encode(), 2) == 1)
    app = App("shop", partitions=2)
    orders, items = app.stream("orders", Order), app.stream("items", Item)
    app.join_table("titles", orders, items, _flaky_line, output=app.stream("lines", Line))
    with TestPlatform(app) as platform:
        platform.send("items", Item(title="item 1"), key=key)
        platform.send("orders", Order(id=0, item=key), key=key)
        platform.send("orders", Order(id=1, item=key), key=key)
        platform.run_until_idle("titles")
        assert [v.title for v in platform.values("lines")] == ["item 1"]
        _FAIL_ONCE["on"] = False
        failed = list_exceptions(platform.streams, service="titles")
        assert [f.input["partition"] for f in failed] == [1]
        replay(platform.streams, failed)
        platform.run_until_idle("titles")  # a new run: the replay is its first record
        # read from the retry stream's partition 0, joined with partition 1's rows
        assert [(v.order, v.title) for v in platform.values("lines")] == [
            (0, "item 1"), (1, "item 1")]
