"""Property tests: random, out-of-order, late and duplicated input through the real runtime
(``TestPlatform``, the embedded log) gives exactly what the reference model computes from the
whole input — the window table, the final results and the late records."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from millstream.service import (
    Collect,
    Count,
    Hopping,
    Latest,
    Max,
    Mean,
    Min,
    Session,
    Sliding,
    Sum,
    Tumbling,
)
from millstream.testing import TestPlatform
from tests.windows.apps import Click, clicks_app
from tests.windows.reference import Item, expected_windows

AGGREGATIONS = {"Count": Count, "Sum": Sum, "Min": Min, "Max": Max, "Mean": Mean,
                "Collect": Collect, "Latest": Latest}

clicks_strategy = st.lists(
    # key, event time (ms; mostly multiples of 5 s, so records land on window edges and
    # watermarks on closing times), amount, times sent (duplicates)
    st.tuples(st.sampled_from("abc"),
              st.one_of(st.integers(0, 24).map(lambda s: s * 5000), st.integers(0, 120_000)),
              st.integers(-5, 20), st.integers(1, 3)),
    max_size=60)


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    kind = draw(st.sampled_from(["tumbling", "hopping", "session", "sliding"]))
    if kind == "tumbling":
        return kind, {"size": draw(st.sampled_from([10_000, 30_000, 60_000]))}
    if kind == "hopping":
        every = draw(st.sampled_from([5_000, 10_000, 20_000]))
        return kind, {"size": every * draw(st.integers(1, 4)), "every": every}
    if kind == "sliding":
        return kind, {"size": draw(st.sampled_from([5_000, 10_000, 30_000]))}
    return kind, {"gap": draw(st.sampled_from([1_000, 10_000, 30_000]))}


def declare(kind: str, sizes: dict[str, int]) -> Any:
    if kind == "tumbling":
        return Tumbling(sizes["size"] / 1000)
    if kind == "hopping":
        return Hopping(sizes["size"] / 1000, sizes["every"] / 1000)
    if kind == "sliding":
        return Sliding(sizes["size"] / 1000)
    return Session(sizes["gap"] / 1000)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
# a record whose window's end + grace is exactly the watermark is late
@example(sent=[("a", 20_000, 1, 1), ("a", 15_000, 1, 1)], window=("tumbling", {"size": 10_000}),
         aggregate="Count", lateness=0, grace=0, retention=None, partitions=1,
         exactly_once=False)
# a record that bridges two sessions merges them; one exactly gap away does not join
@example(sent=[("a", 0, 1, 1), ("a", 20_000, 2, 1), ("a", 10_000, 4, 2), ("a", 30_000, 8, 1)],
         window=("session", {"gap": 10_000}), aggregate="Sum", lateness=20_000, grace=0,
         retention=None, partitions=1, exactly_once=True)
# a record exactly gap from two sessions joins neither, and its own would close at once
@example(sent=[("a", 0, 1, 1), ("a", 20_000, 1, 1), ("a", 10_000, 1, 1)],
         window=("session", {"gap": 10_000}), aggregate="Count", lateness=0, grace=0,
         retention=None, partitions=1, exactly_once=False)
@given(sent=clicks_strategy, window=windows(),
       aggregate=st.sampled_from(sorted(AGGREGATIONS)),
       lateness=st.sampled_from([0, 5_000, 20_000]), grace=st.sampled_from([0, 5_000, 20_000]),
       retention=st.sampled_from([None, 0, 30_000, 100_000]), partitions=st.integers(1, 3),
       exactly_once=st.booleans())
def test_the_runtime_computes_what_the_reference_model_does(
        sent: list[tuple[str, int, int, int]], window: tuple[str, dict[str, int]],
        aggregate: str, lateness: int, grace: int, retention: int | None, partitions: int,
        exactly_once: bool) -> None:
    kind, sizes = window
    items = [Item(key, t, amount) for key, t, amount, times in sent for _ in range(times)]
    app = clicks_app(window=declare(kind, sizes),
                     aggregate=AGGREGATIONS[aggregate]() if aggregate == "Count"
                     else AGGREGATIONS[aggregate]("amount"),
                     lateness=lateness / 1000, grace=grace / 1000,
                     retention=None if retention is None else retention / 1000,
                     partitions=partitions, exactly_once=exactly_once)
    # Latest picks by event time: the reference model is given (time, amount)
    modelled = items if aggregate != "Latest" else [Item(i.key, i.t, (i.t, i.value))
                                                    for i in items]
    want = expected_windows(modelled, partitions=partitions, kind=kind, aggregate=aggregate,
                            lateness=lateness, grace=grace, retention=retention, **sizes)
    with TestPlatform(app) as platform:
        platform.send_many("clicks", [Click(user=i.key, at=i.t / 1000, amount=i.value)
                                      for i in items], key=lambda c: c.user)
        platform.run_until_idle("counts")
        assert dict(platform.tables.table("counts").scan(limit=None)) == want.table
        late = sorted((e.input["partition"], e.input["offset"])
                      for e in platform.exceptions())
        assert late == want.late
        assert all(e.stage == "late" for e in platform.exceptions())
        results = sorted((r.model_dump() for r in platform.values("results")),
                         key=lambda r: (r["key"], r["start"]))
        assert results == want.results
