"""A second instance joining a running join takes half the partitions over with their state:
nothing is lost and nothing is joined twice (the stream–table join's rows and the interval
join's kept records move with their checkpoints)."""

from __future__ import annotations

from collections import Counter

from millstream.testing import TestPlatform
from tests.joins import reference
from tests.joins.apps import Event, Item, Order, ads, shop


def test_a_second_instance_of_an_interval_join_loses_no_pair_and_doubles_none() -> None:
    app = ads(within=5, grace=10**6)  # a grace so long no record is late: any read order
    events = [reference.Event(side, f"u{n % 12}", (n * 7919) % 100_000,
                              n if side == reference.LEFT else 10_000 + n)
              for n in range(200) for side in (reference.LEFT, reference.RIGHT)]
    half = len(events) // 2

    def send(platform: TestPlatform, chosen: list[reference.Event]) -> None:
        for e in chosen:
            platform.send("shown" if e.side == reference.LEFT else "clicked",
                          Event(id=e.id, at=e.time / 1000), key=e.key)

    expected, late = reference.interval_join(events, lambda key: 0, within=5_000,
                                             grace=10**9, lateness=0)
    assert late == [] and len(expected) > 50
    with TestPlatform(app, partitions_override=4) as platform:
        first = platform.start("clicks")
        first.wait_assigned()
        send(platform, events[:half])
        platform.wait_until(lambda: first.statistics().records_in == half, timeout=30)
        second = platform.start("clicks")
        platform.wait_until(lambda: len(platform.streams.admin().describe_group(
            "ads.clicks").members) == 2 and all(
            any(sp.stream in ("shown", "clicked") for sp in m.partitions)
            for m in platform.streams.admin().describe_group("ads.clicks").members),
            timeout=30)
        send(platform, events[half:])
        platform.wait_for("pairs", len(expected), timeout=30)
        first.stop()
        second.stop()
        got = Counter((r.key or b"").decode() for r in platform.records("pairs"))
        pairs = Counter(((r.key or b"").decode(), p.shown, p.clicked)
                        for r, p in zip(platform.records("pairs"), platform.values("pairs"),
                                        strict=True))
        assert pairs == Counter(expected)
        assert sum(got.values()) == len(expected)
        assert second.statistics().records_in > 0


def test_a_second_instance_of_a_stream_table_join_keeps_every_row() -> None:
    app = shop()
    with TestPlatform(app, partitions_override=4) as platform:
        for i in range(8):
            platform.send("items", Item(title=f"item {i}"), key=f"k{i}")
        first = platform.start("titles")
        first.wait_assigned()
        for n in range(100):
            platform.send("orders", Order(id=n, item=f"k{n % 8}"), key=f"k{n % 8}")
        platform.wait_for("lines", 100, timeout=30)
        second = platform.start("titles")
        platform.wait_until(lambda: all(
            any(sp.stream == "orders" for sp in m.partitions)
            for m in platform.streams.admin().describe_group("shop.titles").members)
            and len(platform.streams.admin().describe_group("shop.titles").members) == 2,
            timeout=30)
        for n in range(100, 200):
            platform.send("orders", Order(id=n, item=f"k{n % 8}"), key=f"k{n % 8}")
        platform.wait_for("lines", 200, timeout=30)
        first.stop()
        second.stop()
        lines = sorted((v.order, v.title) for v in platform.values("lines"))
        assert lines == [(n, f"item {n % 8}") for n in range(200)]
        assert second.statistics().records_in > 0
