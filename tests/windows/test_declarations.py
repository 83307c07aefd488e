"""What ``app.windowed`` refuses, with a message naming the value and what to write instead,
and what a record without a usable event time gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from millstream import InvalidRequestError
from millstream.service import App, Count, Hopping, Sum, Tumbling
from millstream.testing import TestPlatform
from tests.windows.test_windows import row, table_rows


class Reading(BaseModel):
    sensor: str
    at: Any = None
    level: Any = 0


def refusal(declare: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        declare()
    return str(caught.value)


def test_settings_a_window_cannot_honour_are_refused_when_declared() -> None:
    app = App("decl")
    readings = app.stream("readings", Reading)

    def windowed(**settings: Any) -> Any:
        given = {"window": Tumbling(60), "aggregate": Count(), **settings}
        return lambda: app.windowed("w", readings, **given)

    assert refusal(windowed(window=60)) == (
        "windowed service 'w': window=60 must be Tumbling(size), Hopping(size, every), "
        "Sliding(size), Session(gap) or Counted(n)")
    assert refusal(windowed(aggregate=len)) == (
        "windowed service 'w': aggregate=<built-in function len> must be Count(), "
        "Sum(field), Min(field), Max(field), Mean(field), Latest(), Collect() or "
        "Reducer(initial, add)")
    assert refusal(windowed(emit="always")) == (
        "windowed service 'w': emit='always' must be 'final' (a result when a window "
        "closes) or 'updates' (a result at every change)")
    assert refusal(windowed(grace=-1)) == (
        "windowed service 'w': grace=-1 must be ≥ 0 seconds, in whole milliseconds or more")
    assert refusal(windowed(lateness="5s")) == (
        "windowed service 'w': lateness='5s' must be a number of seconds or a timedelta "
        "(e.g. 60 or timedelta(minutes=1))")
    assert refusal(lambda: Hopping(size=60, every=120)) == (
        "Hopping(size=60, every=120): every must be ≤ size (windows further apart than their "
        "size would leave records in none)")
    assert refusal(lambda: Tumbling(0)) == (
        "Tumbling size=0 must be > 0 seconds, in whole milliseconds or more")
    app.stream("other", Reading)
    assert refusal(windowed(output="other")) == (
        "windowed service 'w': output 'other' carries Reading v1, but results are "
        "WindowRow; declare it app.stream('other', WindowRow)")
    assert "w" not in app.services
    # durations as timedelta are the same as seconds
    declared = app.windowed("ok", readings, window=Tumbling(timedelta(minutes=1)),
                            aggregate=Count(), grace=timedelta(seconds=5))
    assert (declared.window.size_ms, declared.grace_ms) == (60_000, 5_000)
    assert app.services["ok"].stateful and app.services["ok"].retry.attempts == 1


class Stamped(BaseModel):
    sensor: str
    at: datetime


def test_event_time_from_a_datetime_field_naive_meaning_utc() -> None:
    app = App("decl", partitions=1)
    stamped = app.stream("stamped", Stamped)
    app.windowed("w", stamped, window=Tumbling(60), aggregate=Count(), time="at")
    with TestPlatform(app) as platform:
        platform.send_many("stamped", [
            Stamped(sensor="s", at=datetime(2026, 12, 6, 15, 0, 59)),  # naive: UTC
            Stamped(sensor="s", at=datetime(2026, 12, 6, 16, 1, tzinfo=timezone(
                timedelta(hours=1)))),                                 # 15:01 UTC
        ], key="s")
        platform.run_until_idle("w")
        minute = int(datetime(2026, 12, 6, 15, 0, tzinfo=UTC).timestamp() * 1000)
        assert table_rows(platform, "w") == {
            f"s/{minute:015d}": row("s", minute, minute + 60_000, 1, 1, True),
            f"s/{minute + 60_000:015d}": row("s", minute + 60_000, minute + 120_000, 1, 1,
                                             False)}


def test_a_record_without_a_usable_event_time_or_value_fails_alone() -> None:
    app = App("decl", partitions=1)
    readings = app.stream("readings", Reading)
    app.windowed("w", readings, window=Tumbling(60), aggregate=Sum("level"), time="at")
    with TestPlatform(app) as platform:
        platform.send_many("readings", [
            Reading(sensor="s", at=30, level=1),
            Reading(sensor="s", at=50.5, level=2),
            Reading(sensor="s", at="yesterday", level=4),
            Reading(sensor="s", at=10, level="high"),
        ], key="s")
        platform.run_until_idle("w")
        assert table_rows(platform, "w") == {
            "s/000000000000000": row("s", 0, 60_000, 3, 2, False)}
        failed = platform.exceptions()
        assert [(e.stage, e.input["offset"], e.message) for e in failed] == [
            ("handle", 2, "event time field 'at' is 'yesterday'; it must be a datetime or a "
                          "number of seconds since the epoch"),
            ("handle", 3, "Sum('level') takes finite numbers, not str 'high'"),
        ]


def test_a_field_the_payload_model_does_not_have_is_refused_when_declared() -> None:
    app = App("decl", partitions=1)
    readings = app.stream("readings", Reading)
    assert refusal(lambda: app.windowed(
        "w", readings, window=Tumbling(60), aggregate=Count(), time="ts")) == (
        "windowed service 'w': time names field 'ts', which Reading (the payload of "
        "'readings') does not have; its fields: sensor, at, level")
    assert refusal(lambda: app.windowed(
        "w", readings, window=Tumbling(60), aggregate=Sum("levels"), time="at")) == (
        "windowed service 'w': aggregate Sum('levels') names field 'levels', which Reading "
        "(the payload of 'readings') does not have; its fields: sensor, at, level")
    assert app.services == {} and "w" not in app.tables  # nothing half-declared
    dicts = app.stream("raw", dict)  # a dict payload: fields are known only per record
    app.windowed("d", dicts, window=Tumbling(60), aggregate=Sum("levels"), time="ts")
