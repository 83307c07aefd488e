"""The table feed behind a table output: every batch it applies leaves the table equal to its
stream replayed up to the offsets stored with it, however many feeds share the table."""

from __future__ import annotations

import threading

from pydantic import BaseModel

from millstream import StreamPartition, Streams
from millstream.codecs import ModelCodec
from millstream.tables import Tables, open_tables
from millstream.tables._feed import TableFeed
from millstream.tables._materialize import rebuild
from tests.tables.helpers import produce_feed, replay


def ends(streams: Streams, stream: str) -> dict[StreamPartition, int]:
    return {StreamPartition(stream, p.partition): p.end
            for p in streams.admin().describe_stream(stream).partitions}


def test_apply_takes_what_the_stream_holds_at_the_call_in_batches(
        streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("orders", partitions=3)
    produce_feed(streams, "orders", 3000, keys=300)
    with TableFeed(streams, tables, "orders", "orders", batch_size=700,
                   indexes=["colour"]) as feed:
        assert feed.apply() == 3000
        stats = feed.statistics()
        assert stats.records == 3000 and stats.batches == 5 and stats.skipped == 0
        assert feed.apply() == 0  # nothing new: nothing written
        assert feed.statistics().batches == 5
        produce_feed(streams, "orders", 1000, keys=300, seed=2, start=3000)
        assert feed.apply() == 1000
    t = tables.table("orders")
    assert t.offsets() == ends(streams, "orders")
    assert t.info().feed == "orders" and t.info().indexes == ("colour",)
    assert dict(t.scan()) == replay(streams, "orders")
    assert t.count() == len(replay(streams, "orders"))


def test_a_new_feed_continues_from_the_offsets_stored_with_the_table(
        streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("orders", partitions=2)
    produce_feed(streams, "orders", 2000, keys=200)
    with TableFeed(streams, tables, "orders", "orders") as feed:
        assert feed.apply() == 2000
    produce_feed(streams, "orders", 500, keys=200, seed=3, start=2000)
    with TableFeed(streams, tables, "orders", "orders") as feed:
        assert feed.apply() == 500  # only what the table does not reflect yet
    assert dict(tables.table("orders").scan()) == replay(streams, "orders")


def test_two_feeds_of_one_table_apply_each_record_once_between_them(
        streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("orders", partitions=3)
    with TableFeed(streams, tables, "orders", "orders", batch_size=300) as a, \
            TableFeed(streams, tables, "orders", "orders", batch_size=300) as b:
        for round_ in range(4):
            produce_feed(streams, "orders", 1000, keys=400, seed=round_ + 1,
                         start=1000 * round_)
            results: list[int] = []

            def apply(feed: TableFeed, into: list[int] = results) -> None:
                into.append(feed.apply())

            threads = [threading.Thread(target=apply, args=(f,)) for f in (a, b)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            # each batch was written by one feed only: together they applied the round
            assert sum(results) == 1000, results
            table = tables.table("orders")
            assert table.offsets() == ends(streams, "orders")
            assert dict(table.scan()) == replay(streams, "orders")
        total = a.statistics().records + b.statistics().records
        assert total == 4000


def test_a_table_rebuilt_under_a_feed_is_continued_from_its_new_offsets(
        streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("orders", partitions=2)
    produce_feed(streams, "orders", 1500, keys=100)
    with TableFeed(streams, tables, "orders", "orders") as feed:
        feed.apply()
        rebuild(streams, tables, "orders")  # writes the table under the feed
        produce_feed(streams, "orders", 500, keys=100, seed=4, start=1500)
        assert feed.apply() == 500
    assert tables.table("orders").offsets() == ends(streams, "orders")
    assert dict(tables.table("orders").scan()) == replay(streams, "orders")


def test_a_batch_waits_for_a_transaction_that_moves_the_offsets_and_then_reads_again(
        streams: Streams, tables: Tables) -> None:
    """The check that a batch starts where the table's offsets are is made inside the
    transaction, after any other writer of the table has committed: a clear (as a rebuild
    in place makes) committed meanwhile sends the feed back to the start."""
    streams.admin().create_stream("orders", partitions=2)
    produce_feed(streams, "orders", 1000, keys=300)
    with TableFeed(streams, tables, "orders", "orders") as feed:
        assert feed.apply() == 1000
        produce_feed(streams, "orders", 500, keys=300, seed=5, start=1000)
        holding, release = threading.Event(), threading.Event()

        def clear() -> None:
            with open_tables(tables.url) as other, other.table("orders").transaction() as tx:
                tx.clear()
                holding.set()
                release.wait(10)

        clearer = threading.Thread(target=clear)
        clearer.start()
        assert holding.wait(10)
        applied: list[int] = []
        applier = threading.Thread(target=lambda: applied.append(feed.apply()))
        applier.start()
        applier.join(0.5)  # the feed is inside its batch now, waiting for the table
        release.set()
        clearer.join(10)
        applier.join(30)
        assert applied == [1500]  # read again from offset 0: the whole stream
    assert tables.table("orders").offsets() == ends(streams, "orders")
    assert dict(tables.table("orders").scan()) == replay(streams, "orders")


class Order(BaseModel):
    id: str
    total: float = 0.0


def test_rows_that_do_not_fit_the_model_are_skipped_like_a_replay_skips_them(
        streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("raw")
    with streams.open_producer() as p:
        p.send("raw", b'{"id": "a", "total": 1}', key=b"a")
        p.send("raw", b'{"id": "b", "total": "lots"}', key=b"b")
        p.send("raw", b"[1, 2]", key=b"c")
        p.send("raw", b'{"id": "d"}', key=b"d")
        p.flush()
    with TableFeed(streams, tables, "raw", "raw", model=Order) as feed:
        assert feed.apply() == 4
        assert feed.statistics().skipped == 2
    assert dict(tables.table("raw").scan()) == {"a": {"id": "a", "total": 1.0},
                                                "d": {"id": "d", "total": 0.0}}


def test_within_a_batch_each_keys_last_usable_record_counts_also_for_rows_the_runtime_wrote(
        streams: Streams, tables: Tables) -> None:
    # the feed's inline path (rows stamped with the model's codec headers, checked only to be
    # JSON objects) keeps the rule of a replay: a tombstone after a row deletes it, a row after
    # a tombstone restores it, and a stamped record that is not a JSON object is skipped
    # without hiding the row before it
    stamped = ModelCodec(Order).headers
    streams.admin().create_stream("stamped")
    with streams.open_producer() as p:
        for key, value in ((b"a", b'{"id": "a", "total": 1}'), (b"a", None),
                           (b"b", None), (b"b", b'{"id": "b", "total": 2}'),
                           (b"c", b'{"id": "c", "total": 3}'), (b"c", b"[3]"),
                           (b"d", b'{"id": "d", "total": 4}'), (b"d", b'{"id": "d", "total": NaN}'),
                           (b"e", b'{"id": "e", "total": 5}'), (b"e", None),
                           (b"e", b'{"id": "e", "total": 6}')):
            p.send("stamped", value, key=key, headers=stamped if value is not None else ())
        p.flush()
    with TableFeed(streams, tables, "stamped", "stamped", model=Order) as feed:
        assert feed.apply() == 11
        stats = feed.statistics()
        assert (stats.batches, stats.upserts, stats.deletes, stats.skipped) == (1, 4, 1, 2)
    assert dict(tables.table("stamped").scan()) == {
        "b": {"id": "b", "total": 2}, "c": {"id": "c", "total": 3},
        "d": {"id": "d", "total": 4}, "e": {"id": "e", "total": 6}}
