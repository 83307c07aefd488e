"""Tumbling and hopping windows on the embedded log: the window table, results on the output
stream, late records on the exceptions stream, both delivery modes, and time from the
record's timestamp."""

from __future__ import annotations

from typing import Any

import pytest

from millstream.service import Count, Hopping, Sum, Tumbling, WindowRow
from millstream.streams._partitioner import partition_for_key
from millstream.testing import ManualClock, TestPlatform
from tests.windows.apps import Click, clicks_app


def table_rows(platform: TestPlatform, table: str = "counts") -> dict[str, dict[str, Any]]:
    return dict(platform.tables.table(table).scan())


def row(key: str, start: int, end: int, value: Any, records: int,
        closed: bool) -> dict[str, Any]:
    return {"key": key, "start": start, "end": end, "value": value, "records": records,
            "closed": closed}


def clicks(user: str, *times: float, amount: int = 1) -> list[Click]:
    return [Click(user=user, at=t, amount=amount) for t in times]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["checkpointed", "transactional"])
def test_a_tumbling_count_keeps_one_row_per_key_and_window_and_closes_on_the_watermark(
        exactly_once: bool) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), exactly_once=exactly_once)
    with TestPlatform(app) as platform:
        # keys "a" and "b" share partition 0 of 2, so they share its watermark; "d" is on 1
        sent = [*clicks("a", 0, 10), *clicks("b", 30), *clicks("a", 59.999, 60, 61),
                *clicks("b", 95), *clicks("a", 130), *clicks("d", 50)]
        platform.send_many("clicks", sent, key=lambda c: c.user)
        assert {r.key: r.partition for r in platform.records("clicks")} == {
            b"a": 0, b"b": 0, b"d": 1}
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 60_000, 3, 3, True),
            "a/000000000060000": row("a", 60_000, 120_000, 2, 2, True),
            "a/000000000120000": row("a", 120_000, 180_000, 1, 1, False),
            "b/000000000000000": row("b", 0, 60_000, 1, 1, True),
            "b/000000000060000": row("b", 60_000, 120_000, 1, 1, True),
            "d/000000000000000": row("d", 0, 60_000, 1, 1, False),
        }
        # final results: one per closed window, when the watermark passed its end (at 95 s
        # for [0, 60), at 130 s for [60, 120)), in order of end, then key
        assert platform.values("results") == [
            WindowRow(key="a", start=0, end=60_000, value=3, records=3, closed=True),
            WindowRow(key="b", start=0, end=60_000, value=1, records=1, closed=True),
            WindowRow(key="a", start=60_000, end=120_000, value=2, records=2, closed=True),
            WindowRow(key="b", start=60_000, end=120_000, value=1, records=1, closed=True),
        ]
        assert platform.exceptions() == []


def test_a_record_whose_windows_all_closed_goes_to_the_exceptions_stream_as_late() -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), grace=10, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", clicks("a", 0, 75, 5, 80, 3), key="a")
        platform.run_until_idle("counts")
        # the window [0, 60) closed when the watermark reached 60 + 10: at 75 s
        late = platform.exceptions()
        assert [(e.stage, e.message) for e in late] == [
            ("late", "late record: key 'a' at event time 5000 ms missed window(s) "
                     "[0, 60000) (ms), closed at watermark 75000 ms with grace 10000 ms"),
            ("late", "late record: key 'a' at event time 3000 ms missed window(s) "
                     "[0, 60000) (ms), closed at watermark 80000 ms with grace 10000 ms"),
        ]
        assert [e.input["offset"] for e in late] == [2, 4]
        assert late[0].error_type == "millstream.service.LateRecord"
        # handled by design, not failures: `exceptions replay --all` leaves them out unless
        # asked (a replayed late record would be late again)
        assert [e.reported for e in late] == [True, True]
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 60_000, 1, 1, True),
            "a/000000000060000": row("a", 60_000, 120_000, 2, 2, False),
        }


def test_grace_keeps_a_window_open_for_records_that_come_late_but_within_it() -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), grace=20, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", clicks("a", 0, 75, 5, 79.999, 6, 80, 7), key="a")
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 60_000, 3, 3, True),
            "a/000000000060000": row("a", 60_000, 120_000, 3, 3, False),
        }
        assert [e.input["offset"] for e in platform.exceptions()] == [6]


def test_lateness_holds_the_watermark_back() -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), lateness=30, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", clicks("a", 10, 85, 20, 90, 30), key="a")
        platform.run_until_idle("counts")
        # watermark 55 after 85: [0, 60) still open for 20; 60 after 90: closed before 30
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 60_000, 2, 2, True),
            "a/000000000060000": row("a", 60_000, 120_000, 2, 2, False),
        }
        assert [e.input["offset"] for e in platform.exceptions()] == [4]


def test_a_hopping_sum_with_updates_emits_every_change_and_keeps_each_window() -> None:
    app = clicks_app(window=Hopping(size=60, every=30), aggregate=Sum("amount"),
                     emit="updates", partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [Click(user="a", at=10, amount=5),
                                      Click(user="a", at=40, amount=7),
                                      Click(user="a", at=95, amount=1)], key="a")
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/-00000000030000": row("a", -30_000, 30_000, 5, 1, True),
            "a/000000000000000": row("a", 0, 60_000, 12, 2, True),
            "a/000000000030000": row("a", 30_000, 90_000, 7, 1, True),
            "a/000000000060000": row("a", 60_000, 120_000, 1, 1, False),
            "a/000000000090000": row("a", 90_000, 150_000, 1, 1, False),
        }
        assert [(r.start, r.value, r.closed) for r in platform.values("results")] == [
            (-30_000, 5, False), (0, 5, False),                   # 10 s
            (0, 12, False), (30_000, 7, False), (-30_000, 5, True),  # 40 s, closing one
            (60_000, 1, False), (90_000, 1, False),               # 95 s, closing two
            (0, 12, True), (30_000, 7, True),
        ]


def test_event_time_is_the_record_timestamp_unless_a_field_is_named() -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), time=None, partitions=1)
    with TestPlatform(app) as platform:
        producer = platform.streams.open_producer()
        for ts in (1_000, 59_000, 61_000, 2_000):
            data, headers = app.streams["clicks"].codec.encode(Click(user="a", at=0))
            producer.send("clicks", data, key=b"a", headers=headers, timestamp=ts)
        producer.flush()
        producer.close()
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 60_000, 2, 2, True),
            "a/000000000060000": row("a", 60_000, 120_000, 1, 1, False),
        }
        assert [e.stage for e in platform.exceptions()] == ["late"]


def test_the_window_table_is_indexed_by_key_and_current_gives_a_keys_open_windows() -> None:
    app = clicks_app(window=Hopping(size=60, every=30), aggregate=Count())
    declared = app.services["counts"].handler.declared
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [*clicks("a", 10, 40, 70), *clicks("b", 70)],
                           key=lambda c: c.user)
        platform.run_until_idle("counts")
        table = platform.tables.table("counts")
        assert set(table.info().indexes) == {"key", "start"}
        assert [k for k, _ in table.query({"key": "b"})] == [
            "b/000000000030000", "b/000000000060000"]
        assert declared.current(platform.tables, "a") == [
            WindowRow(key="a", start=60_000, end=120_000, value=1, records=1, closed=False),
            WindowRow(key="a", start=30_000, end=90_000, value=2, records=2, closed=False),
        ]
        assert [r.start for r in declared.current(platform.tables, b"a", closed=True)] == [
            60_000, 30_000, 0, -30_000]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["checkpointed", "transactional"])
def test_windows_the_idle_clock_closes_reach_the_table_while_the_service_runs(
        exactly_once: bool) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), idle_timeout=30, partitions=1,
                     exactly_once=exactly_once)
    clock = ManualClock()
    start = clock.time()
    window = int((start - 100) * 1000 // 60_000 * 60_000)
    with TestPlatform(app, clock=clock) as platform:
        platform.send_many("clicks", clicks("a", start - 100, start - 95), key="a")
        with platform.running("counts") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 2)
            table = platform.tables.table("counts")
            for _ in range(40):  # the idle rule closes it; the next checkpoint (5 s) or
                clock.advance(1)  # commit makes its row durable, and the table gets it
                platform.wait_until(lambda: runner._hooks is not None
                                    and runner._hooks.advanced_to == clock.time())
            platform.wait_until(lambda: table.get(f"a/{window:015d}")["closed"] is True)
            assert table.get(f"a/{window:015d}") == {
                "key": "a", "start": window, "end": window + 60_000, "value": 2,
                "records": 2, "closed": True}


def test_records_stamped_by_the_platform_clock_give_their_event_time_to_timestamp_windows(
        ) -> None:
    # time=None: event time is the record's timestamp; TestPlatform.send(timestamp=) sets it
    app = clicks_app(window=Tumbling(60), aggregate=Count(), idle_timeout=30, partitions=1,
                     time=None)
    clock = ManualClock()
    start = clock.time()
    with TestPlatform(app, clock=clock) as platform:
        platform.send_many("clicks", clicks("a", 0, 0), key="a", timestamp=start - 100)
        platform.send("clicks", Click(user="a", at=0), key="a", timestamp=start - 30)
        with platform.running("counts") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 3)
            for _ in range(32):
                clock.advance(1)
                platform.wait_until(lambda: runner._hooks is not None
                                    and runner._hooks.advanced_to == clock.time())
            first = int((start - 100) * 1000 // 60_000 * 60_000)
            second = int((start - 30) * 1000 // 60_000 * 60_000)
            assert platform.wait_for("results", 2) == [
                WindowRow(key="a", start=first, end=first + 60_000, value=2, records=2,
                          closed=True),
                WindowRow(key="a", start=second, end=second + 60_000, value=1, records=1,
                          closed=True)]


def test_an_idle_partition_closes_its_windows_with_the_wall_clock_after_idle_timeout(
        ) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), idle_timeout=30, partitions=1)
    clock = ManualClock()
    start = clock.time()  # event times are those of the clock, as for events stamped live
    with TestPlatform(app, clock=clock) as platform:
        platform.send_many("clicks", clicks("a", start - 100, start - 95), key="a")
        with platform.running("counts") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 2)

            def step() -> None:  # one second of wall clock, seen by the service's advance
                clock.advance(1)
                platform.wait_until(lambda: runner._hooks is not None
                                    and runner._hooks.advanced_to == clock.time())

            for _ in range(29):  # idle for 29 s (counted from its first look after them)
                step()
            assert platform.values("results") == []
            step()
            step()
            # idle for 30 s: the watermark is now − 30 s, past the window's end
            window = (start - 100) * 1000 // 60_000 * 60_000
            assert platform.wait_for("results", 1) == [
                WindowRow(key="a", start=window, end=window + 60_000, value=2, records=2,
                          closed=True)]
        # the watermark that closed the window was checkpointed with it (an idle second that
        # closes nothing moves it in memory only: no checkpoint is written for it)
        state = platform.state("counts")
        assert state["open"] == {}
        assert window + 60_000 <= state["wm"] <= int(clock.time() * 1000) - 30_000


def test_a_replayed_record_keeps_its_event_time() -> None:
    # time=None: event time is the record's timestamp; a replay must not make it "now"
    from millstream.operations._replay import list_exceptions, replay

    # two partitions, a key of partition 1: the replay comes from the retry stream's
    # partition 0, and must be neither refused by the key check nor counted elsewhere
    app = clicks_app(window=Tumbling(60), aggregate=Count(), time=None, partitions=2)
    key = next(k for k in "abcdefgh" if partition_for_key(k.encode(), 2) == 1)
    with TestPlatform(app) as platform:
        producer = platform.streams.open_producer()
        for ts in (1_000, 70_000, 2_000):  # the last is late (window [0, 60) closed at 70 s)
            data, headers = app.streams["clicks"].codec.encode(Click(user=key, at=0))
            producer.send("clicks", data, key=key.encode(), headers=headers, timestamp=ts)
        producer.flush()
        producer.close()
        platform.run_until_idle("counts")
        late = list_exceptions(platform.streams, service="counts")
        assert [e.stage for e in late] == ["late"]
        replay(platform.streams, late)
        platform.run_until_idle("counts")
        # the replayed record is at 2 s: late again, counted in no window, no window moved
        assert table_rows(platform) == {
            f"{key}/000000000000000": row(key, 0, 60_000, 1, 1, True),
            f"{key}/000000000060000": row(key, 60_000, 120_000, 1, 1, False)}
        assert [e.stage for e in platform.exceptions()] == ["late", "late"]


def test_records_without_a_key_or_outside_their_keys_partition_fail_alone() -> None:
    # a window groups by the record key within one partition: a keyless record, or one a
    # producer put in another partition than its key's, would be counted apart from its key
    app = clicks_app(window=Tumbling(60), aggregate=Count(), partitions=2)
    with TestPlatform(app) as platform:
        producer = platform.streams.open_producer()
        codec = app.streams["clicks"].codec
        home = partition_for_key(b"x", 2)
        for key, partition in [(b"x", home), (b"x", home), (None, 0), (b"x", 1 - home)]:
            data, headers = codec.encode(Click(user="x", at=1))
            producer.send("clicks", data, key=key, partition=partition, headers=headers)
        producer.flush()
        producer.close()
        platform.run_until_idle("counts")
        assert table_rows(platform) == {"x/000000000000000": row("x", 0, 60_000, 2, 2, False)}
        failed = sorted(platform.exceptions(), key=lambda e: e.input["partition"])
        assert [(e.stage, e.input["partition"]) for e in failed] == sorted(
            [("handle", 0), ("handle", 1 - home)], key=lambda f: f[1])
        messages = {e.input["partition"]: e.message for e in failed}
        assert messages[1 - home].startswith(
            f"record clicks/{1 - home}@0 has key b'x', which belongs in partition {home} of 2, "
            f"not {1 - home}: windowed service 'counts' needs its inputs keyed by the key it "
            "groups by with the default partitioner")
        assert any(m.startswith(f"record clicks/0@{0 if home == 1 else 2} has no key: "
                                "windowed service 'counts' groups records by key; re-key it")
                   for m in messages.values())
