"""The joins through the real runtime against the reference model (``reference.py``), for
random inputs: out of order, late, keys spread over two partitions, records sent twice.

The input is drawn as a few *steps*, each a list of records for one input stream; a step is
sent and read to the end (``run_until_idle``, which also checkpoints and stops the service, so
each step starts from the state the last one checkpointed) before the next is sent. Within a
step the records of one stream partition come in the order drawn, and a shard sees the steps
in order — which is the order the reference model is given."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from millstream.streams._partitioner import partition_for_key
from millstream.testing import TestPlatform
from tests.joins import reference
from tests.joins.apps import Event, Item, Order, ads, market, shop
from tests.joins.reference import LEFT, RIGHT

KEYS = ["a", "b", "c", "d"]
#: a platform run per step: half the profile's examples (30 in ci, 150 in reliability)
EXAMPLES = max(settings.default.max_examples // 2, 5)


def partition(key: str) -> int:
    return partition_for_key(key.encode(), 2)


#: (side, [(key, time in 100 ms, repeat?)]): a step of one stream's records
steps = st.lists(
    st.tuples(st.sampled_from([LEFT, RIGHT]),
              st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 60), st.booleans()),
                       min_size=1, max_size=12)),
    min_size=1, max_size=4)


def reported_ids(platform: TestPlatform, service: str) -> list[int]:
    """The ids of the records ``service`` reported late."""
    found = platform.exceptions(service)
    assert all(e.document["stage"] in ("late", "reported") for e in found)
    return sorted(Event.model_validate_json(base64.b64decode(e.document["value_b64"])).id
                  for e in found)


def events_of(drawn: list[tuple[str, list[tuple[str, int, bool]]]]
              ) -> list[tuple[str, list[reference.Event]]]:
    """Number the records; a record drawn with ``repeat`` is sent twice in a row."""
    out, ident = [], 0
    for side, records in drawn:
        step = []
        for key, time, repeat in records:
            event = reference.Event(side, key, time * 100, ident)
            step += [event, event] if repeat else [event]
            ident += 1
        out.append((side, step))
    return out


@settings(max_examples=EXAMPLES)
@given(steps)
def test_the_stream_table_join_matches_the_reference(drawn: list) -> None:  # type: ignore[type-arg]
    steps_ = events_of(drawn)
    app = shop()
    with TestPlatform(app) as platform:
        for side, events in steps_:
            for e in events:
                if side == LEFT:
                    platform.send("orders", Order(id=e.id, item=e.key), key=e.key)
                else:
                    platform.send("items", Item(title=str(e.id)), key=e.key)
            platform.run_until_idle("titles")
        got = sorted((r.key.decode() if r.key else "", v.order,
                      None if v.title is None else int(v.title))
                     for r, v in zip(platform.records("lines"), platform.values("lines"),
                                     strict=True))
        by_shard = [e for _, events in steps_ for e in events]
        expected = sorted(reference.table_join(
            [e for n in (0, 1) for e in by_shard if partition(e.key) == n]))
        assert got == expected
        assert platform.exceptions() == []


@settings(max_examples=EXAMPLES)
@given(steps, st.integers(0, 20), st.integers(0, 20), st.integers(0, 10))
def test_the_interval_join_matches_the_reference(drawn: list, within: int,  # type: ignore[type-arg]
                                                 grace: int, lateness: int) -> None:
    steps_ = events_of(drawn)
    with TestPlatform(ads(within=within / 10, grace=grace / 10,
                          lateness=lateness / 10)) as platform:
        for side, events in steps_:
            for e in events:
                platform.send("shown" if side == LEFT else "clicked",
                              Event(id=e.id, at=e.time / 1000), key=e.key)
            platform.run_until_idle("clicks")
        got = sorted((r.key.decode() if r.key else "", v.shown, v.clicked)
                     for r, v in zip(platform.records("pairs"), platform.values("pairs"),
                                     strict=True))
        inputs = [e for _, events in steps_ for e in events]
        expected, late = reference.interval_join(inputs, partition, within=within * 100,
                                                 grace=grace * 100, lateness=lateness * 100)
        assert got == expected
        assert reported_ids(platform, "clicks") == sorted(e.id for e in late)


@settings(max_examples=EXAMPLES)
@given(steps, st.integers(0, 20), st.integers(0, 10), st.none() | st.integers(0, 30),
       st.booleans())
def test_the_asof_join_matches_the_reference(drawn: list, grace: int,  # type: ignore[type-arg]
                                             lateness: int, tolerance: int | None,
                                             inner: bool) -> None:
    steps_ = events_of(drawn)
    app = market(grace=grace / 10, lateness=lateness / 10,
                 tolerance=None if tolerance is None else tolerance / 10, inner=inner)
    with TestPlatform(app) as platform:
        for side, events in steps_:
            for e in events:
                platform.send("trades" if side == LEFT else "quotes",
                              Event(id=e.id, at=e.time / 1000), key=e.key)
            platform.run_until_idle("prices")
        got = sorted(((r.key.decode() if r.key else "", v.trade, v.quote)
                      for r, v in zip(platform.records("answers"), platform.values("answers"),
                                      strict=True)),
                     key=lambda a: (a[0], a[1], -1 if a[2] is None else a[2]))
        inputs = [e for _, events in steps_ for e in events]
        expected, late, waiting = reference.asof_join(
            inputs, partition, grace=grace * 100, lateness=lateness * 100,
            tolerance=None if tolerance is None else tolerance * 100, inner=inner)
        assert got == expected
        assert reported_ids(platform, "prices") == sorted(e.id for e in late)
        waits = sum(len(s.get("a~", ())) for s in platform.state_by_partition("prices").values())
        assert waits == len(waiting)
