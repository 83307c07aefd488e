"""The join operators against the reference model, in memory: the real operators, ``Context``
and ``Shard`` (with its per-attempt overlay), fed records one at a time as a shard would handle
them — many random inputs, quickly. ``test_properties.py`` does the same through the runtime.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millstream.codecs import JsonCodec
from millstream.records import Record
from millstream.runtime._joining import EventTime
from millstream.runtime._joining_asof import AsofHistory
from millstream.runtime._joining_interval import LEFT, RIGHT, IntervalBuffers
from millstream.runtime._joining_operators import AsofJoin, IntervalJoin
from millstream.runtime._state import Shard
from millstream.service import Context, LateJoinRecord
from tests.joins.reference import Event, asof_join, interval_join, none_last

KEYS = ["a", "b", "c"]  # a and c share a shard
STREAMS = {"left": "L", "right": "R"}


def partition(key: str) -> int:
    return KEYS.index(key) % 2


def pair(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {"l": None if left is None else left["id"],
            "r": None if right is None else right["id"]}


class Driver:
    """Hands records to an operator as the runtime does: a shard per partition number, an
    attempt's overlay kept when it succeeds."""

    def __init__(self, operator: Any) -> None:
        self.operator = operator
        self.ctx = Context("app", "j", None, ("out",), True)  # type: ignore[arg-type]
        self.shards: dict[int, Shard] = {}
        self.out: list[tuple[str, int, int | None]] = []
        self.late: list[int] = []
        self._offset = 0

    def feed(self, event: Event) -> None:
        number = partition(event.key)
        shard = self.shards.setdefault(number, Shard())
        value = {"id": event.id}
        record = Record(STREAMS[event.side], number, self._offset, event.time,
                        event.key.encode(), json.dumps(value).encode())
        self._offset += 1
        self.ctx._begin(record, shard, 1)
        shard.begin()
        result = self.operator(value, self.ctx, None)
        shard.keep()
        for item in result or ():  # returned: keyed by the record's key
            self.out.append((event.key, item["l"], item["r"]))
        for emitted in self.ctx.emitted:  # emitted (released, expired): each names its key
            assert isinstance(emitted.key, bytes)
            self.out.append((emitted.key.decode(), emitted.value["l"], emitted.value["r"]))
        self.late += [event.id for r in self.ctx.reported if isinstance(r, LateJoinRecord)]


events = st.lists(
    st.tuples(st.sampled_from(["left", "right"]), st.sampled_from(KEYS),
              st.integers(0, 20)),
    max_size=60,
).map(lambda items: [Event(side, key, t, i) for i, (side, key, t) in enumerate(items)])
#: the same events again, some of them twice (an upstream that sent them again)
with_duplicates = st.tuples(events, st.lists(st.integers(0, 59), max_size=10)).map(
    lambda pair: pair[0] + [pair[0][i] for i in pair[1] if i < len(pair[0])])


def interval(within: int, grace: int, lateness: int, how: str = "inner") -> IntervalJoin:
    codec = JsonCodec()
    return IntervalJoin("j", "L", "R", {LEFT: codec, RIGHT: codec}, pair, "out",
                        times={LEFT: EventTime(None, lateness), RIGHT: EventTime(None, lateness)},
                        buffers=IntervalBuffers(within, grace), idle_ms=None, how=how)


def asof(grace: int, lateness: int, tolerance: int | None, inner: bool) -> AsofJoin:
    codec = JsonCodec()
    return AsofJoin("j", "L", "R", {LEFT: codec, RIGHT: codec}, pair, "out",
                    times={LEFT: EventTime(None, lateness), RIGHT: EventTime(None, lateness)},
                    history=AsofHistory(grace, tolerance), inner=inner, report=False,
                    idle_ms=None)


# small times and durations, so that records often fall on the edges of each other's reach
@settings(max_examples=500)  # in memory: 500 inputs take a few seconds
@given(with_duplicates, st.integers(0, 8), st.integers(0, 8), st.integers(0, 5),
       st.sampled_from(["inner", "left", "outer"]))
def test_the_interval_join_gives_every_pair_of_records_that_are_not_late_once(
        inputs: list[Event], within: int, grace: int, lateness: int, how: str) -> None:
    driver = Driver(interval(within, grace, lateness, how))
    for event in inputs:
        driver.feed(event)
    pairs, late = interval_join(inputs, partition, within=within, grace=grace,
                                lateness=lateness, how=how)
    assert sorted(driver.out, key=none_last) == pairs
    assert sorted(driver.late) == sorted(e.id for e in late)


@settings(max_examples=500)  # in memory: 500 inputs take a few seconds
@given(with_duplicates, st.integers(0, 8), st.integers(0, 5), st.none() | st.integers(0, 10),
       st.booleans())
def test_the_asof_join_answers_as_the_whole_input_says(
        inputs: list[Event], grace: int, lateness: int, tolerance: int | None,
        inner: bool) -> None:
    driver = Driver(asof(grace, lateness, tolerance, inner))
    for event in inputs:
        driver.feed(event)
    answers, late, waiting = asof_join(inputs, partition, grace=grace, lateness=lateness,
                                       tolerance=tolerance, inner=inner)
    assert sorted(driver.out, key=lambda a: (a[0], a[1], -1 if a[2] is None else a[2])) \
        == answers
    assert sorted(driver.late) == sorted(e.id for e in late)
    kept = sum(AsofHistory.waiting(shard) for shard in driver.shards.values())
    assert kept == len(waiting)


@settings(max_examples=500)  # in memory: 500 inputs take a few seconds
@given(events, st.integers(0, 8), st.integers(0, 8))
def test_the_interval_join_keeps_only_what_a_partner_can_still_reach(
        inputs: list[Event], within: int, grace: int) -> None:
    driver = Driver(interval(within, grace, 0))
    for event in inputs:
        driver.feed(event)
    buffers = IntervalBuffers(within, grace)
    for number, shard in driver.shards.items():
        kept = [e for e in inputs if partition(e.key) == number]
        largest = {side: max(e.time for e in kept if e.side == side)
                   for side in {e.side for e in kept}}
        if len(largest) < 2:
            continue  # one input has shown no time: no watermark, everything may be kept
        watermark = min(largest.values())
        reachable = {(e.time) for e in kept if e.time + buffers.horizon >= watermark}
        for name, entries in shard.items():
            if name.startswith("j0/") or name.startswith("j1/"):
                assert all(entry[0] in reachable for entry in entries), (name, entries, watermark)


def test_a_kept_record_waits_for_a_partner_that_is_not_late_after_the_watermark_moved_on(
        ) -> None:
    # c at 10 moves the watermark past a@0 + within; a@5 on the right is not late (10 ≤ 5 + 5)
    # and must still meet a@0: kept records stay until t + 2·within + grace
    driver = Driver(interval(5, 0, 0))
    for event in [Event("left", "a", 0, 0), Event("right", "c", 10, 1),
                  Event("right", "a", 5, 2)]:
        driver.feed(event)
    assert driver.out == [("a", 0, 2)]
    assert driver.late == []


def test_an_old_version_stays_while_a_record_not_late_can_still_ask_for_it() -> None:
    # versions a@3 and a@8 with the watermark at 8 and grace 5: a record at 6 is not late
    # (8 ≤ 6 + 5) and its answer is a@3, so a@3 must not be dropped when a@8 comes; c@30 on
    # both inputs then moves the watermark to 30, which answers a@6 and c@10
    driver = Driver(asof(5, 0, None, False))
    for event in [Event("right", "a", 3, 0), Event("left", "c", 10, 1),
                  Event("right", "a", 8, 2), Event("left", "a", 6, 3),
                  Event("right", "c", 30, 4), Event("left", "c", 30, 5)]:
        driver.feed(event)
    assert sorted(driver.out) == [("a", 3, 0), ("c", 1, None)]
    assert driver.late == []


def test_a_version_at_the_records_own_time_that_is_not_late_is_its_answer() -> None:
    driver = Driver(asof(2, 0, None, False))
    for event in [Event("left", "a", 5, 0), Event("right", "c", 7, 1),
                  Event("right", "a", 5, 2), Event("right", "c", 8, 3),
                  Event("left", "c", 9, 4)]:  # the watermark: min(9, 8) = 8 > 5 + 2
        driver.feed(event)
    assert driver.out == [("a", 0, 2)]


def test_a_tombstone_is_no_row_from_its_time_on_in_an_asof_join() -> None:
    # k: a row at 100, deleted at 200; records at 150 and 300; a row again at 400
    driver = Driver(asof(0, 0, None, True))  # inner: a record with no row is dropped
    feed = [("right", 100, {"id": 1}), ("right", 200, None), ("left", 150, {"id": 10}),
            ("left", 300, {"id": 11}), ("right", 400, {"id": 2}), ("left", 500, {"id": 12})]
    for side, t, value in feed:
        shard = driver.shards.setdefault(0, Shard())
        data = None if value is None else json.dumps(value).encode()
        record = Record(STREAMS[side], 0, 0, t, b"k", data)
        driver.ctx._begin(record, shard, 1)
        shard.begin()
        driver.operator(value, driver.ctx, None)
        shard.keep()
        driver.out += [(e.value["l"], e.value["r"]) for e in driver.ctx.emitted]
    # 150 had row 1; 300 had none (deleted at 200): dropped; 500 waits for the watermark
    assert driver.out == [(10, 1)]
