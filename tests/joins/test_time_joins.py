"""The stream–stream (interval) and as-of joins through the runtime (``TestPlatform``): exact
outputs, late records on the exceptions stream, and state that does not grow with time.

Records of the two inputs are read interleaved in no set order within one run; each test
sends what must come first, lets the service read it (``run_until_idle``), then sends the
rest, so the order the join sees is the one written here. One partition, one watermark: the
smaller of the two inputs' largest times seen, minus lateness (none until both have one)."""

from __future__ import annotations

from millstream.service import App
from millstream.testing import TestPlatform
from tests.joins.apps import Answer, Event, ads, market


def one_partition(app: App) -> TestPlatform:
    return TestPlatform(app, partitions_override=1)


def step(platform: TestPlatform, service: str, stream: str,
         records: list[tuple[str, int, float]]) -> None:
    """Send ``(key, id, at)`` records to ``stream`` and let ``service`` read them."""
    for key, ident, at in records:
        platform.send(stream, Event(id=ident, at=at), key=key)
    platform.run_until_idle(service)


def pairs(platform: TestPlatform) -> list[tuple[int | None, int | None]]:
    return sorted(((p.shown, p.clicked) for p in platform.values("pairs")),
                  key=lambda p: (p[0] or -1, p[1] or -1))


def answers(platform: TestPlatform) -> list[tuple[int, int | None]]:
    return sorted((a.trade, a.quote) for a in platform.values("answers"))


def test_records_of_a_key_within_the_interval_are_paired_once() -> None:
    with one_partition(ads(within=10)) as platform:
        step(platform, "clicks", "shown", [("u", 1, 100), ("v", 3, 100)])
        step(platform, "clicks", "clicked", [("u", 10, 105), ("v", 12, 111)])
        step(platform, "clicks", "shown", [("u", 2, 112)])
        step(platform, "clicks", "clicked", [("u", 11, 115)])
        # u: 1–10 (5 s), 2–10 (7 s), 2–11 (3 s), not 1–11 (15 s); v: 3–12 is 11 s apart
        assert pairs(platform) == [(1, 10), (2, 10), (2, 11)]
        assert {r.key for r in platform.records("pairs")} == {b"u"}
        assert platform.exceptions() == []


def test_a_record_after_the_watermark_passed_its_reach_is_reported_late() -> None:
    with one_partition(ads(within=10, grace=5)) as platform:
        step(platform, "clicks", "shown", [("u", 1, 100)])
        step(platform, "clicks", "clicked", [("u", 10, 170)])
        # the watermark is 100 (shown is at 100): clicks far ahead make no shown record late
        step(platform, "clicks", "shown", [("u", 5, 175)])
        # the watermark is 170: a record at 155 may still meet a partner (170 ≤ 155 + 10 +
        # 5), one at 154.999 may not
        step(platform, "clicks", "shown", [("u", 2, 160), ("u", 3, 155),
                                           ("u", 4, 154.999)])
        assert pairs(platform) == [(2, 10), (5, 10)]
        (late,) = platform.exceptions("clicks")
        assert late.document["stage"] == "late"
        assert late.error_type == "millstream.service.LateJoinRecord"
        assert late.message == (
            "record at 1970-01-01T00:02:34.999+00:00 came after the watermark "
            "(1970-01-01T00:02:50.000+00:00) passed its time + within + grace: join 'clicks' "
            "can no longer match it (a larger grace= keeps records waiting longer)")


def test_a_left_join_emits_a_left_record_alone_once_no_partner_can_come() -> None:
    with one_partition(ads(within=10, how="left")) as platform:
        step(platform, "clicks", "shown", [("u", 1, 100), ("v", 2, 100)])
        step(platform, "clicks", "clicked", [("u", 10, 105), ("w", 11, 100)])
        # the watermark is 100: v@100 may still meet a click at up to 110
        assert pairs(platform) == [(1, 10)]
        step(platform, "clicks", "clicked", [("x", 12, 121)])
        assert pairs(platform) == [(1, 10)]  # shown is still at 100: so is the watermark
        step(platform, "clicks", "shown", [("y", 3, 121)])
        # 121 passed 100 + 2·within: v@100 met no partner and never will; a click alone
        # (w@100) is not emitted by a left join
        assert pairs(platform) == [(1, 10), (2, None)]
        assert [r.key for r in platform.records("pairs")][-1] == b"v"


def test_an_outer_join_emits_a_record_of_either_side_alone() -> None:
    with one_partition(ads(within=10, how="outer")) as platform:
        step(platform, "clicks", "shown", [("u", 1, 100), ("v", 2, 100)])
        step(platform, "clicks", "clicked", [("u", 10, 105), ("w", 11, 100)])
        step(platform, "clicks", "clicked", [("x", 12, 121)])
        step(platform, "clicks", "shown", [("y", 3, 121)])
        assert pairs(platform) == [(None, 11), (1, 10), (2, None)]


def test_kept_records_are_dropped_once_no_partner_can_reach_them() -> None:
    with one_partition(ads(within=10)) as platform:
        step(platform, "clicks", "shown", [(f"k{i}", i, 100 + i) for i in range(50)])
        (shard,) = platform.state_by_partition("clicks").values()
        # no click yet, no watermark: a click may still come for any of them
        assert sorted(int(k[4:]) for k in shard if k.startswith("j0/")) == list(range(50))
        step(platform, "clicks", "clicked", [("k0", 99, 170)])
        (shard,) = platform.state_by_partition("clicks").values()
        # the watermark is 149: kept while t ≥ 149 − 2·within, the 21 at 129..149
        assert sorted(int(k[4:]) for k in shard if k.startswith("j0/")) == list(range(29, 50))
        step(platform, "clicks", "shown", [("k50", 50, 200)])
        (shard,) = platform.state_by_partition("clicks").values()
        # the watermark is 170: every shown record before 150 is gone
        assert sorted(k for k in shard if k.startswith("j")) == ["j0/k50", "j1/k0", "j~"]
        assert sorted(shard["j~"]) == [[170_000, 1, "k0"], [200_000, 0, "k50"]]


def test_each_trade_gets_the_latest_quote_at_or_before_its_time() -> None:
    with one_partition(market()) as platform:
        step(platform, "prices", "quotes", [("t", 3, 50), ("s", 1, 100)])
        step(platform, "prices", "trades", [("t", 12, 100), ("s", 10, 105)])
        # the watermark is 100 (quotes are at 100): a quote at 100 may still come
        assert answers(platform) == []
        step(platform, "prices", "quotes", [("s", 2, 110)])
        # the watermark is 105: trade 12 (at 100) is answered, trade 10 (at 105) waits
        assert answers(platform) == [(12, 3)]
        step(platform, "prices", "trades", [("s", 11, 112)])
        assert answers(platform) == [(10, 1), (12, 3)]  # the watermark is 110
        step(platform, "prices", "quotes", [("s", 4, 112), ("s", 5, 120)])
        step(platform, "prices", "trades", [("z", 13, 130)])
        # the watermark is 120: a quote at the trade's own time (112) is its answer
        assert answers(platform) == [(10, 1), (11, 4), (12, 3)]
        assert [r.key for r in platform.records("answers")
                if Answer.model_validate_json(r.value or b"").trade == 11] == [b"s"]
        assert platform.exceptions() == []


def test_a_quote_older_than_the_tolerance_is_no_answer_and_late_records_are_reported() -> None:
    with one_partition(market(tolerance=5, grace=2)) as platform:
        step(platform, "prices", "quotes", [("s", 1, 100)])
        step(platform, "prices", "trades", [("s", 10, 104), ("s", 11, 106)])
        step(platform, "prices", "quotes", [("s", 2, 120)])
        step(platform, "prices", "trades", [("s", 14, 125)])
        # the watermark is 120: trade 10 gets quote 1 (4 s older), trade 11's (6 s) is over
        # the tolerance
        assert answers(platform) == [(10, 1), (11, None)]
        # the watermark is 120: a trade at 117.5 is late (120 > 117.5 + 2), at 118 not
        step(platform, "prices", "trades", [("s", 12, 117.5), ("s", 13, 118)])
        step(platform, "prices", "quotes", [("s", 3, 117)])  # late: not applied
        late = platform.exceptions("prices")
        assert [(e.document["stage"], e.input["stream"]) for e in late] == [
            ("late", "trades"), ("late", "quotes")]
        assert late[1].message == (
            "version at 1970-01-01T00:01:57.000+00:00 came after the watermark "
            "(1970-01-01T00:02:00.000+00:00) passed its time + grace: join 'prices' has "
            "answered for that time already (a larger grace= waits longer)")
        step(platform, "prices", "quotes", [("s", 4, 121)])
        # trade 13 (118): quote 1 (100) is 18 s older than it, over the tolerance
        assert answers(platform) == [(10, 1), (11, None), (13, None)]


def test_an_inner_asof_join_drops_a_trade_without_a_quote() -> None:
    with one_partition(market(inner=True, grace=1)) as platform:
        step(platform, "prices", "trades", [("s", 10, 100)])
        step(platform, "prices", "quotes", [("s", 1, 101), ("s", 2, 102)])
        step(platform, "prices", "trades", [("s", 11, 101.5)])
        step(platform, "prices", "quotes", [("s", 3, 110)])
        step(platform, "prices", "trades", [("s", 12, 110)])
        assert answers(platform) == [(11, 1)]


def _answer_or_bug(trade: Event, quote: Event | None) -> object:
    if trade.id == 13:
        return 5  # a bug in the user's combine: not an Answer
    return Answer(trade=trade.id, quote=quote.id if quote else None)


def test_a_released_record_whose_answer_cannot_be_sent_stays_kept_and_is_not_lost() -> None:
    app = App("market", partitions=1)
    app.join_asof("prices", app.stream("trades", Event), app.stream("quotes", Event),
                  _answer_or_bug, output=app.stream("answers", Answer), time="at", grace=0)
    with TestPlatform(app) as platform:
        step(platform, "prices", "quotes", [("s", 1, 100)])
        step(platform, "prices", "trades", [("s", 10, 101), ("s", 13, 102)])
        step(platform, "prices", "quotes", [("s", 2, 110)])  # the watermark 102: answers 10
        step(platform, "prices", "trades", [("s", 14, 111)])  # 110: releases 13, which fails
        assert answers(platform) == [(10, 1)]
        (failed,) = platform.exceptions("prices")
        assert (failed.stage, failed.input["stream"], failed.input["offset"]) == (
            "handle", "trades", 2)
        assert failed.message.startswith("stream 'answers' carries Answer, but ctx.emit in "
                                         "service 'prices' was given an int")
        # the failed attempt took nothing away: trade 13 still waits (fix, then replay 14)
        (shard,) = platform.state_by_partition("prices").values()
        assert [entry[0] for entry in shard["a~"]] == [102_000]
