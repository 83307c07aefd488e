"""The materializer: a table equals its stream replayed up to the offsets stored with it."""

from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel

from millstream import (
    FencedError,
    InvalidRequestError,
    OffsetOutOfRangeError,
    Retention,
    StreamPartition,
    Streams,
)
from millstream.tables import Tables, open_tables
from millstream.tables._materialize import Materializer, rebuild
from tests.tables.helpers import produce_feed, replay


def contents(tables: Tables, name: str) -> dict[str, object]:
    return dict(tables.table(name).scan())


def test_upserts_and_tombstones_make_the_replayed_table(streams: Streams, tables: Tables
                                                        ) -> None:
    streams.admin().create_stream("orders", partitions=3)
    produce_feed(streams, "orders", 3000, keys=300)
    with Materializer(streams, tables, "orders", "orders", batch_size=700,
                      indexes=["colour"]) as m:
        stats = m.catch_up()
    ends = {StreamPartition("orders", p.partition): p.end
            for p in streams.admin().describe_stream("orders").partitions}
    assert stats.records == 3000 and stats.batches >= 5 and stats.skipped == 0
    assert stats.deletes > 0 and stats.offsets == ends
    t = tables.table("orders")
    assert t.offsets() == ends
    assert t.info().feed == "orders" and t.info().indexes == ("colour",)
    assert contents(tables, "orders") == replay(streams, "orders")
    reds = {k for k, d in replay(streams, "orders").items() if d["colour"] == "red"}
    assert {k for k, _ in t.query({"colour": "red"})} == reds

    # a new materializer continues from the stored offsets
    produce_feed(streams, "orders", 1000, keys=300, seed=2, start=3000)
    with Materializer(streams, tables, "orders", "orders") as m:
        assert m.catch_up().records == 1000
    assert contents(tables, "orders") == replay(streams, "orders")


class Order(BaseModel):
    id: str
    total: float = 0.0


def test_bad_records_are_skipped_and_counted(streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("raw")
    with streams.open_producer() as p:
        p.send("raw", b'{"id": "a", "total": 1}', key=b"a")
        p.send("raw", b"[1, 2]", key=b"b")            # not an object
        p.send("raw", b"{broken", key=b"c")           # not JSON
        p.send("raw", b'{"id": "d"}', key=None)       # no key
        p.send("raw", b'{"total": 5}', key=b"e")      # fails the model
        p.send("raw", b'{"id": "f", "extra": 1}', key=b"f")
        p.flush(10)
    with Materializer(streams, tables, "raw", "raw", model=Order) as m:
        stats = m.catch_up()
    assert (stats.records, stats.upserts, stats.skipped) == (6, 2, 4)
    t = tables.table("raw")
    assert t.get("a", Order) == Order(id="a", total=1)
    assert t.get("f") == {"id": "f", "total": 0.0}  # normalised by the model
    assert t.offsets() == {StreamPartition("raw", 0): 6}


def test_a_second_writer_fences_the_first(streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("s")
    produce_feed(streams, "s", 100)
    with Materializer(streams, tables, "t", "s", batch_size=10) as first, \
            Materializer(streams, tables, "t", "s", batch_size=10) as second:
        assert first.step() == 10
        assert second.step() == 10  # opens at offset 10, then commits 20
        with pytest.raises(FencedError, match="someone else"):
            first.step()
        assert tables.table("t").offsets() == {StreamPartition("s", 0): 20}


def test_a_table_fed_from_another_stream_is_refused(streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("a")
    streams.admin().create_stream("b")
    with Materializer(streams, tables, "t", "a") as m:
        m.catch_up()
    with Materializer(streams, tables, "t", "b") as m, \
            pytest.raises(InvalidRequestError, match="fed from stream 'a'"):
        m.catch_up()


def test_records_removed_by_retention_refuse_continuing_and_rebuilding(
        streams: Streams, tables: Tables) -> None:
    admin = streams.admin()
    admin.create_stream("short", retention=Retention(max_bytes=2000))
    produce_feed(streams, "short", 50, keys=10)
    with Materializer(streams, tables, "t", "short") as m:
        m.catch_up()
    for i in range(4):  # separate batches: retention drops whole batches, never the newest
        produce_feed(streams, "short", 100, keys=10, seed=3 + i, start=50 + 100 * i)
    admin.enforce_retention()  # type: ignore[attr-defined]
    assert admin.describe_stream("short").partitions[0].start > 50
    before = contents(tables, "t")
    with Materializer(streams, tables, "t", "short") as m, \
            pytest.raises(OffsetOutOfRangeError, match=r"retention \(size ≤ 2000"):
        m.catch_up()
    with pytest.raises(OffsetOutOfRangeError, match="compacted streams"):
        rebuild(streams, tables, "t")
    assert contents(tables, "t") == before  # refused before anything changed


def test_a_compacted_stream_rebuilds_the_same_table(streams: Streams, tables: Tables) -> None:
    admin = streams.admin()
    admin.create_stream("compacted", partitions=2, retention=Retention(compact=True))
    produce_feed(streams, "compacted", 4000, keys=50)
    produce_feed(streams, "compacted", 10, keys=50, seed=9, start=4000)  # a newest batch
    with Materializer(streams, tables, "live", "compacted") as m:
        m.catch_up()
    admin.enforce_retention(force_compact=True)  # type: ignore[attr-defined]
    seen: list[tuple[int, int]] = []
    stats = rebuild(streams, tables, "live", into="copy",
                    progress=lambda done, total: seen.append((done, total)))
    assert stats.records < 4010  # compaction dropped superseded records
    assert contents(tables, "copy") == contents(tables, "live") == replay(streams, "compacted")
    assert seen[-1][0] == seen[-1][1] and seen[0][0] == 0


def test_rebuild_in_place_starts_from_scratch(streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("s", partitions=2)
    produce_feed(streams, "s", 2000)
    with Materializer(streams, tables, "t", "s") as m:
        m.catch_up()
    tables.table("t").put("stray", {"not": "from the stream"})
    stats = rebuild(streams, tables, "t")
    assert stats.records == 2000
    assert contents(tables, "t") == replay(streams, "s")


def test_rebuild_into_another_backend_while_the_live_table_serves(
        streams: Streams, tables: Tables, tmp_path: object) -> None:
    streams.admin().create_stream("feed", partitions=3)
    produce_feed(streams, "feed", 5000, keys=800)
    stop = threading.Event()
    with Materializer(streams, tables, "live", "feed", batch_size=200) as live:
        live.catch_up()

        def writer() -> None:  # the stream keeps growing and the live table keeps up
            seed = 100
            while not stop.is_set():
                produce_feed(streams, "feed", 200, keys=800, seed=seed, start=seed * 1000)
                seed += 1
                stop.wait(0.01)

        feeder = threading.Thread(target=writer)
        runner = threading.Thread(target=live.run)
        feeder.start()
        runner.start()
        try:
            other_url = "sqlite:///" + str(tmp_path).lstrip("/") + "/other.db"
            with open_tables(other_url) as other:
                reads = 0
                stats = rebuild(streams, tables, "live", into="copy", into_tables=other,
                                progress=lambda d, t: None)
                assert stats.records >= 5000
                reads += len(tables.table("live").query({"colour": "red"}))  # still serving
                assert reads > 0
                stop.set()
                feeder.join()
                live.stop()
                runner.join()
                live.catch_up()
                with Materializer(streams, other, "copy", "feed") as m:
                    m.catch_up()
                assert other.table("copy").offsets() == tables.table("live").offsets()
                assert contents(other, "copy") == contents(tables, "live")
                assert contents(tables, "live") == replay(streams, "feed")
                assert other.table("copy").info().indexes == ()  # none declared on live
        finally:
            stop.set()
            live.stop()
            feeder.join()
            runner.join()


def test_run_until_and_stop(streams: Streams, tables: Tables) -> None:
    streams.admin().create_stream("s")
    produce_feed(streams, "s", 300)
    with Materializer(streams, tables, "t", "s", batch_size=50) as m:
        m.run(until=lambda: m.statistics().records >= 300, timeout=0.05)
        assert m.statistics().records == 300
        threading.Timer(0.2, m.stop).start()
        m.run(timeout=0.05)  # returns once stopped
