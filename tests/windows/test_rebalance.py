"""A second instance joining a windowed service in the middle of its windows: the partition
it takes moves with its window state (checkpointed on revocation, loaded on assignment), so
the table, the results and the late records end exactly as the reference model says."""

from __future__ import annotations

import pytest

from millstream.service import Hopping, Sum
from millstream.testing import ManualClock, TestPlatform
from tests.windows.apps import clicks_app
from tests.windows.crashing import traffic
from tests.windows.reference import Item, expected_windows


@pytest.mark.parametrize("exactly_once", [False, True], ids=["checkpointed", "transactional"])
def test_a_second_instance_joining_mid_window_loses_nothing(exactly_once: bool) -> None:
    app = clicks_app(window=Hopping(30, 10), aggregate=Sum("amount"), lateness=5, grace=5,
                     retention=60, idle_timeout=None, partitions=2, exactly_once=exactly_once)
    sent = traffic(3000)
    half = len(sent) // 2
    want = expected_windows([Item(c.user, round(c.at * 1000), c.amount) for c in sent],
                            partitions=2, kind="hopping", size=30_000, every=10_000,
                            aggregate="Sum", lateness=5_000, grace=5_000, retention=60_000)
    clock = ManualClock()
    with TestPlatform(app, clock=clock) as platform:
        platform.send_many("clicks", sent[:half], key=lambda c: c.user)
        first = platform.start("counts")
        platform.wait_until(lambda: first.statistics().records_in >= half, timeout=30)
        clock.advance(1)  # a commit (exactly-once) of what it did
        second = platform.start("counts")
        # both members hold a partition: one moved, in the middle of its windows
        platform.wait_until(lambda: all(r.statistics().assigned
                                        for r in [*first.runners, *second.runners]),
                            timeout=30)
        platform.send_many("clicks", sent[half:], key=lambda c: c.user)

        def done() -> bool:
            clock.advance(1)  # commits and checkpoints are due on the clock
            return platform.lag("counts") == 0
        platform.wait_until(done, timeout=60)
        first.stop()
        second.stop()
        # each took records of the second half; the first took all of the first half
        assert second.statistics().records_in > 0
        assert first.statistics().records_in > half
        assert dict(platform.tables.table("counts").scan(limit=None)) == want.table
        late = [(e.input["partition"], e.input["offset"]) for e in platform.exceptions()]
        results = [r.model_dump() for r in platform.values("results")]
        key = lambda r: (r["key"], r["start"])  # noqa: E731
        if exactly_once:
            assert sorted(late) == want.late
            assert sorted(results, key=key) == want.results
        else:  # records after the last checkpoint before the handover may be handled twice
            assert sorted(set(late)) == want.late
            assert sorted({tuple(sorted(r.items())) for r in results}) == sorted(
                tuple(sorted(r.items())) for r in want.results)
