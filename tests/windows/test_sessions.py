"""Session and sliding windows. A key's records less than ``gap`` apart share a session; a
record that bridges two sessions merges them (with the aggregation's ``merge``). Sliding
windows are Kafka Streams': one per distinct set of records within ``size`` of each other."""

from __future__ import annotations

from millstream.service import Count, Reducer, Session, Sliding, Sum, WindowRow
from millstream.testing import TestPlatform
from tests.windows.apps import Click, clicks_app
from tests.windows.test_windows import row, table_rows


def test_sessions_grow_merge_and_close_gap_after_their_last_record() -> None:
    app = clicks_app(window=Session(gap=10), aggregate=Sum("amount"), lateness=20,
                     partitions=1)
    with TestPlatform(app) as platform:
        sent = [(0, 1), (5, 2), (30, 4), (21, 8), (14.999, 16), (100, 32)]
        platform.send_many("clicks", [Click(user="a", at=t, amount=n) for t, n in sent],
                           key="a")
        platform.run_until_idle("counts")
        # 0, 5 → [0, 5]; 30 → [30, 30]; 21 (< 10 from 30) → [21, 30]; 14.999 bridges
        # [0, 5] and [21, 30] → one session [0, 30] (the watermark, 30 − 20, has not closed
        # [0, 5] yet); 100 closes it (watermark 80 ≥ 30 + 10)
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 30_001, 31, 5, True),
            "a/000000000100000": row("a", 100_000, 100_001, 32, 1, False),
        }
        assert platform.values("results") == [
            WindowRow(key="a", start=0, end=30_001, value=31, records=5, closed=True)]
        # the sessions merged away were removed from the table by tombstones
        removed = {r.key for r in platform.records("counts") if r.value is None}
        assert removed <= {b"a/000000000021000", b"a/000000000030000"}


def test_a_record_no_open_session_takes_and_whose_own_would_be_closed_is_late() -> None:
    app = clicks_app(window=Session(gap=10), aggregate=Count(), grace=5, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [Click(user="a", at=t) for t in (0, 50, 35, 34.999)],
                           key="a")
        platform.run_until_idle("counts")
        # 35 + 10 + 5 = 50 > watermark 50? no: 50 ≤ 50, late; 34.999 too
        assert [e.stage for e in platform.exceptions()] == ["late", "late"]
        assert "missed window(s) [35000, 35001)" in platform.exceptions()[0].message
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 1, 1, 1, True),
            "a/000000000050000": row("a", 50_000, 50_001, 1, 1, False),
        }


def test_a_reducer_without_merge_cannot_serve_session_windows_that_merge() -> None:
    app = clicks_app(window=Session(gap=10), aggregate=Reducer(0, lambda a, c: a + 1),
                     lateness=20, partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [Click(user="a", at=t) for t in (0, 12, 6)], key="a")
        platform.run_until_idle("counts")
        [failed] = platform.exceptions()
        assert (failed.stage, failed.input["offset"]) == ("handle", 2)
        assert failed.message.startswith("Reducer('<lambda>') cannot merge two windows")
        # the failed record left the state as it was: two sessions of one record each
        assert table_rows(platform) == {
            "a/000000000000000": row("a", 0, 1, 1, 1, False),
            "a/000000000012000": row("a", 12_000, 12_001, 1, 1, False),
        }


def test_sliding_windows_are_the_distinct_sets_of_records_within_size_of_each_other(
        ) -> None:
    app = clicks_app(window=Sliding(10), aggregate=Count(), partitions=1)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [Click(user="a", at=t) for t in (0, 5, 12)], key="a")
        platform.run_until_idle("counts")
        # [t − 10 s, t] ends at each record; [r + 1 ms, r + 1 ms + 10 s] starts after a
        # record r once another falls in it; rows show [start, start + size + 1 ms)
        assert table_rows(platform) == {
            "a/-00000000010000": row("a", -10_000, 1, 1, 1, True),           # {0}
            "a/-00000000005000": row("a", -5_000, 5_001, 2, 2, True),        # {0, 5}
            "a/000000000000001": row("a", 1, 10_002, 1, 1, True),            # {5}
            "a/000000000002000": row("a", 2_000, 12_001, 2, 2, False),       # {5, 12}
            "a/000000000005001": row("a", 5_001, 15_002, 1, 1, False),       # {12}
        }
