"""Every aggregation, count windows and retention, through the real runtime."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from millstream.service import (
    App,
    Collect,
    Count,
    Counted,
    Latest,
    Max,
    Mean,
    Min,
    Reducer,
    Sum,
    Tumbling,
    WindowRow,
)
from millstream.testing import TestPlatform
from tests.windows.apps import Click, clicks_app
from tests.windows.test_windows import row, table_rows

SENT = [Click(user="a", at=t, amount=n) for t, n in
        ((1, 4), (3, 9), (2, -2), (50, 7), (70, 1))]


@pytest.mark.parametrize(("aggregate", "value"), [
    (Count(), 4),
    (Sum("amount"), 18),
    (Min("amount"), -2),
    (Max("amount"), 9),
    (Mean("amount"), 4.5),
    (Latest("amount"), 7),  # the largest event time (50 s), not the last to arrive
    (Collect("amount"), [4, 9, -2, 7]),
    (Collect(lambda c: c.amount * 10, limit=2), [-20, 70]),
    (Reducer(initial=list, add=lambda acc, c: [*acc, c.at]), [1.0, 3.0, 2.0, 50.0]),
    (Reducer(0, lambda acc, n: acc + n * n, field="amount"), 16 + 81 + 4 + 49),
], ids=["Count", "Sum", "Min", "Max", "Mean", "Latest", "Collect", "Collect-limit",
        "Reducer", "Reducer-field"])
def test_each_aggregation_gives_its_value_for_a_closed_window(aggregate: Any,
                                                              value: Any) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=aggregate, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", SENT, key="a")
        platform.run_until_idle("counts")
        assert table_rows(platform)["a/000000000000000"] == row("a", 0, 60_000, value, 4,
                                                               True)
        assert platform.values("results")[0].value == value


def test_count_windows_close_at_their_nth_record_whatever_the_time() -> None:
    app = clicks_app(window=Counted(3), aggregate=Sum("amount"), partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [*SENT, Click(user="b", at=0, amount=5)],
                           key=lambda c: c.user)
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 3, 11, 3, True),
            "a/000000000000003": row("a", 3, 6, 8, 2, False),
            "b/000000000000000": row("b", 0, 3, 5, 1, False),
        }
        assert platform.values("results") == [
            WindowRow(key="a", start=0, end=3, value=11, records=3, closed=True)]
        assert platform.exceptions() == []


def test_a_closed_window_is_removed_from_the_table_and_the_shard_after_its_retention(
        ) -> None:
    app = clicks_app(window=Tumbling(60), aggregate=Count(), grace=5, retention=100,
                     partitions=1)
    with TestPlatform(app) as platform:
        # [0, 60) closes at watermark 65 and expires at 165; [60, 120) closes at 125
        platform.send_many("clicks", [Click(user="a", at=t) for t in (10, 70, 130)],
                           key="a")
        platform.run_until_idle("counts")
        assert set(table_rows(platform)) == {"a/000000000000000", "a/000000000060000",
                                             "a/000000000120000"}
        platform.send_many("clicks", [Click(user="a", at=165)], key="a")
        platform.run_until_idle("counts")
        assert table_rows(platform) == {
            "a/000000000060000": row("a", 60_000, 120_000, 1, 1, True),
            "a/000000000120000": row("a", 120_000, 180_000, 2, 2, False),
        }
        # a tombstone on the changelog removed it; the shard forgot it too
        assert [r.value for r in platform.records("counts")
                if r.key == b"a/000000000000000"][-1] is None
        state = platform.state("counts")
        assert state["expire"] == [[225_000, "a/000000000060000"]]
        assert list(state["open"]) == ["a/000000000120000"]


class Stamped(BaseModel):
    user: str
    at: datetime


def stamped_app(aggregate: Any) -> App:
    app = App("nj", partitions=1)
    app.windowed("w", app.stream("ev", Stamped), window=Tumbling(60), aggregate=aggregate,
                 time="at", output=app.stream("out", WindowRow))
    return app


def test_latest_and_collect_keep_a_datetime_as_its_json_text() -> None:
    at = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)
    for aggregate, value in ((Latest("at"), "2024-01-01T00:00:30Z"),
                             (Collect("at"), ["2024-01-01T00:00:30Z"])):
        with TestPlatform(stamped_app(aggregate)) as platform:
            platform.send("ev", Stamped(user="a", at=at), key="a")
            platform.run_until_idle("w")
            (row_,) = [r for _, r in platform.tables.table("w").scan()]
            assert row_["value"] == value
            assert platform.exceptions() == []


def test_a_reducer_returning_what_is_not_json_fails_that_record_alone() -> None:
    at = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)
    app = stamped_app(Reducer(list, lambda acc, v: {v.user} if v.user == "b"
                              else [*acc, v.user]))
    with TestPlatform(app) as platform:
        platform.send_many("ev", [Stamped(user="a", at=at), Stamped(user="b", at=at),
                                  Stamped(user="a", at=at)], key="k")
        platform.run_until_idle("w")  # the service did not stop at its checkpoint
        (row_,) = [r for _, r in platform.tables.table("w").scan()]
        assert (row_["value"], row_["records"]) == (["a", "a"], 2)
        (failed,) = platform.exceptions()
        assert (failed.stage, failed.input["offset"]) == ("handle", 1)
        assert failed.message.startswith("Reducer('<lambda>'): add returned set {'b'}, "
                                         "which is not JSON")
