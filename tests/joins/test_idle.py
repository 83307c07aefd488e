"""Time moves for an idle partition: with no record for ``idle_timeout`` seconds of wall-clock
time, a join's watermark moves to now − lateness − idle_timeout (the services' ``advance``
hook, about once a second), so an as-of join answers the records that wait and an interval
join drops what no partner can reach — without another record to move time."""

from __future__ import annotations

from collections.abc import Callable

from millstream.testing import ManualClock, TestPlatform
from millstream.testing._running import RunningService
from tests.joins.apps import Answer, Event, ads, market


def stepper(platform: TestPlatform, running: RunningService,
            clock: ManualClock) -> Callable[[], None]:
    runner = running.runners[0]

    def step() -> None:  # one second of wall clock, seen by the service's advance
        clock.advance(1)
        platform.wait_until(lambda: runner._hooks is not None
                            and runner._hooks.advanced_to == clock.time())

    return step


def test_an_idle_partition_answers_the_records_waiting_in_an_asof_join() -> None:
    clock = ManualClock()
    start = clock.time()  # event times are the clock's, as for events stamped live
    # grace 5: the two records are on time whichever the service reads first
    with TestPlatform(market(grace=5, idle_timeout=30), clock=clock,
                      partitions_override=1) as platform:
        platform.send("quotes", Event(id=1, at=start - 101), key="s")
        platform.send("trades", Event(id=10, at=start - 100), key="s")
        with platform.running("prices") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 2)
            step = stepper(platform, running, clock)
            for _ in range(29):  # idle for 29 s (counted from its first look after them)
                step()
            assert platform.values("answers") == []
            step()
            step()
            # idle for 30 s: the watermark is now − 30 s, past the trade's time + grace
            assert platform.wait_for("answers", 1) == [Answer(trade=10, quote=1)]
        (shard,) = platform.state_by_partition("prices").values()
        # both inputs idle: each input's time moved to now − 30 s
        assert shard["~t0"] == shard["~t1"] == int(clock.time() * 1000) - 30_000
        assert "a~" not in shard


def test_an_idle_partition_drops_what_no_partner_can_reach_in_an_interval_join() -> None:
    clock = ManualClock()
    start = clock.time()
    with TestPlatform(ads(within=10, idle_timeout=30), clock=clock,
                      partitions_override=1) as platform:
        platform.send("shown", Event(id=1, at=start - 100), key="u")
        with platform.running("clicks") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 1)
            step = stepper(platform, running, clock)
            for _ in range(31):
                step()
        (shard,) = platform.state_by_partition("clicks").values()
        assert sorted(shard) == ["j~", "~t0", "~t1"] and shard["j~"] == []


def test_an_inner_asof_record_the_idle_clock_releases_unmatched_is_reported() -> None:
    clock = ManualClock()
    start = clock.time()
    with TestPlatform(market(grace=5, idle_timeout=30, inner=True, report_unmatched=True),
                      clock=clock, partitions_override=1) as platform:
        platform.send("trades", Event(id=10, at=start - 100), key="s")  # no quote comes
        with platform.running("prices") as running:
            runner = running.runners[0]
            platform.wait_until(lambda: runner.statistics().records_in == 1)
            step = stepper(platform, running, clock)
            for _ in range(29):
                step()
            assert runner.statistics().exceptions == 0  # still waiting for the watermark
            for _ in range(2):
                step()
            platform.wait_until(lambda: runner.statistics().exceptions == 1)
            assert runner.statistics().errors == 0  # reported as asked: not an error
        assert platform.values("answers") == []
        (reported,) = platform.exceptions("prices")
        assert reported.document["stage"] == "join"
        assert reported.error_type == "millstream.service.UnmatchedJoinRecord"
        assert reported.message.startswith("no version of key 's' at or before ")
        # the idle clock released it, not a record: the exception names the shard
        assert (reported.input["stream"], reported.input["partition"],
                reported.input["offset"]) == ("trades", 0, -1)
