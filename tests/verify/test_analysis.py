"""The verify checker on hand-made histories: each anomaly is found, counted exactly and
shown by example — the proof that ``millstream verify`` can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream._verify.analysis import EXAMPLES, Finding, analyse
from millstream._verify.history import (
    Ack,
    Assigned,
    Commit,
    Event,
    Fail,
    History,
    HistoryWriter,
    Poll,
    Read,
    Revoked,
    Seen,
    Send,
    Stopped,
    read_history,
)


def producer(name: str, *events: Event) -> History:
    return History(name, events)


def sent_and_acked(name: str, *placed: tuple[str, int, int]) -> list[Event]:
    out: list[Event] = []
    for value, partition, offset in placed:
        out += [Send(value, "k"), Ack(value, partition, offset)]
    return out


def reader(*records: tuple[int, int, str]) -> History:
    return History("reader", (Read(tuple(Seen(p, o, v) for p, o, v in records)),))


def poll(*records: tuple[int, int, str]) -> Poll:
    return Poll(tuple(Seen(p, o, v) for p, o, v in records))


def member(name: str, *events: Event) -> History:
    """A group member that ran to its end (stopped cleanly when told to)."""
    return History(name, (*events, Stopped()))


def polled_all(*records: tuple[int, int, str]) -> History:
    """A member that polled ``records`` (in one assignment of their partitions) and stopped."""
    return member("consumer-9.0", Assigned(tuple(sorted({p for p, _, _ in records}))),
                  poll(*records))


CLEAN = [
    producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1),
                                             ("c", 1, 0)), Stopped()),
    member("consumer-0.0", Assigned((0, 1), 1.0), poll((0, 0, "a"), (0, 1, "b")),
           Commit(((0, 2),), 2.0), poll((1, 0, "c")), Commit(((1, 1),), 3.0)),
    reader((0, 0, "a"), (0, 1, "b"), (1, 0, "c")),
]


def test_a_clean_history_passes_with_every_count_exact() -> None:
    v = analyse(CLEAN)
    assert v.passed
    assert (v.attempted, v.acknowledged, v.failed, v.indeterminate) == (3, 3, 0, 0)
    assert (v.stored, v.stored_values, v.stored_acknowledged) == (3, 3, 3)
    assert (v.delivered, v.polls, v.commits) == (3, 2, 2)
    assert all(f == Finding() for f in v.anomalies.values())


def test_an_acknowledged_value_missing_from_the_final_read_is_lost() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1),
                                                 ("c", 1, 0))),
        reader((0, 0, "a")),
    ])
    assert not v.passed
    assert v.lost == Finding(2, (
        "'b' acknowledged to producer-0.0 at 0@1, absent from the final read",
        "'c' acknowledged to producer-0.0 at 1@0, absent from the final read"))
    assert (v.acknowledged, v.stored_acknowledged) == (3, 1)
    assert v.duplicated.count == v.conflicting.count == 0


def test_a_value_a_consumer_polled_but_the_log_no_longer_has_is_lost() -> None:
    v = analyse([
        producer("producer-0.0", Send("a", "k"), Send("b", "k")),  # never acknowledged
        History("consumer-1.2", (Assigned((0,)), poll((0, 0, "a"), (0, 1, "b")))),
        reader((0, 0, "a")),
    ])
    assert v.lost == Finding(1, ("'b' polled by consumer-1.2 at 0@1 (never acknowledged), "
                                 "absent from the final read",))
    assert v.indeterminate == 2 and v.stored_indeterminate == 1


def test_an_unacknowledged_send_that_is_missing_is_not_lost() -> None:
    v = analyse([
        producer("producer-0.0", Send("a", "k"), Ack("a", 0, 0), Send("b", "k"),
                 Send("c", "k"), Fail("c", "timed out"), Stopped()),
        polled_all((0, 0, "a")),
        reader((0, 0, "a")),
    ])
    assert v.passed
    assert (v.attempted, v.acknowledged, v.failed, v.indeterminate) == (3, 1, 1, 1)
    assert (v.stored_indeterminate, v.stored_failed) == (0, 0)


def test_a_value_stored_at_two_positions_is_a_duplicate() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1))),
        reader((0, 0, "a"), (0, 1, "b"), (0, 2, "b"), (1, 0, "a")),
    ])
    assert v.duplicated == Finding(2, ("'a' stored at 0@0, 1@0", "'b' stored at 0@1, 0@2"))
    assert (v.stored, v.stored_values) == (4, 2)
    assert v.lost.count == 0 and not v.passed


def test_two_values_claimed_for_one_position_are_a_conflict() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0))),
        producer("producer-1.0", *sent_and_acked("producer-1.0", ("b", 0, 0), ("c", 0, 1))),
        History("consumer-0.0", (Assigned((0,)), poll((0, 1, "x")))),
        reader((0, 0, "a"), (0, 1, "c"), (0, 2, "b")),
    ])
    assert v.conflicting == Finding(2, (
        "0@0 holds two values: 'a' (acknowledged to producer-0.0, in the final read); "
        "'b' (acknowledged to producer-1.0)",
        "0@1 holds two values: 'c' (acknowledged to producer-1.0, in the final read); "
        "'x' (polled by consumer-0.0)",
    ))
    assert v.unexpected == Finding(0, ())  # 'x' was polled, never stored: lost, not unexpected
    assert v.lost.count == 1


def test_an_ack_pointing_at_an_empty_position_of_a_stored_value_is_a_conflict() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 5))),
        reader((0, 0, "a")),
    ])
    assert v.conflicting == Finding(1, (
        "'a' acknowledged to producer-0.0 at 0@5, which the final read does not have; it is "
        "stored at 0@0",))
    assert v.lost.count == 0


def test_offsets_going_backwards_within_one_assignment_are_found() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1),
                                                 ("c", 0, 2))),
        History("consumer-0.3", (
            Assigned((0,)), poll((0, 0, "a"), (0, 1, "b"), (0, 2, "c")),
            poll((0, 1, "b")),                      # back to 1 without losing the partition
            poll((0, 1, "b")),                      # and a repeat of the same offset
        )),
        reader((0, 0, "a"), (0, 1, "b"), (0, 2, "c")),
    ])
    assert v.backwards == Finding(2, (
        "consumer-0.3 polled partition 0 offset 1 after offset 2 in the same assignment",
        "consumer-0.3 polled partition 0 offset 1 after offset 1 in the same assignment"))


def test_a_new_assignment_or_another_process_may_read_again_from_earlier() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1)),
                 Stopped()),
        History("consumer-0.0", (Assigned((0,)), poll((0, 0, "a"), (0, 1, "b")),
                                 Revoked((0,)), Assigned((0,)), poll((0, 1, "b")))),
        member("consumer-0.1", Assigned((0,)), poll((0, 0, "a"))),
        reader((0, 0, "a"), (0, 1, "b")),
    ])
    assert v.passed and v.backwards.count == 0


def test_a_record_below_a_commit_that_no_consumer_polled_is_skipped() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked(
            "producer-0.0", ("a", 0, 0), ("b", 0, 1), ("c", 0, 2), ("d", 0, 3), ("e", 1, 0))),
        History("consumer-0.0", (Assigned((0, 1)), poll((0, 0, "a"), (0, 2, "c")),
                                 Commit(((0, 3),)))),
        reader((0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (0, 3, "d"), (1, 0, "e")),
    ])
    assert v.skipped == Finding(1, (
        "'b' at 0@1 was never polled, yet the group committed offset 3 on partition 0",))
    assert v.undelivered.count == 2  # d and e, after the last commit: counted once, apart
    assert v.delivered == 2 and not v.passed


def test_a_stored_record_the_group_never_polled_fails_the_run_with_examples() -> None:
    # the run lets the group drain to the end of every partition before stopping it
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1),
                                                 ("c", 1, 0)), Stopped()),
        member("consumer-0.0", Assigned((0, 1)), poll((0, 0, "a")), Commit(((0, 1),))),
        reader((0, 0, "a"), (0, 1, "b"), (1, 0, "c")),
    ])
    assert not v.passed
    assert v.undelivered == Finding(2, (
        "'b' at 0@1 was never polled by the group, which was given time to read to the end "
        "of every partition",
        "'c' at 1@0 was never polled by the group, which was given time to read to the end "
        "of every partition"))
    assert (v.delivered, v.stored, v.skipped.count) == (1, 3, 0)
    assert [n for n, f in v.anomalies.items() if f.count] == ["undelivered"]


def test_a_group_whose_members_never_ran_to_their_end_and_polled_nothing_fails() -> None:
    # consumers that crash on every start leave at most an assignment behind
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1)),
                 Stopped()),
        History("consumer-0.0", (Assigned((0,)),)),
        History("consumer-0.1", ()),
        reader((0, 0, "a"), (0, 1, "b")),
    ])
    assert not v.passed
    assert v.incomplete == Finding(2, (
        "no consumer ran to its end: 2 incarnations recorded, none stopped cleanly when told "
        "to (each was killed or ended by itself)",
        "the group polled nothing (2 records stored)"))
    assert (v.polls, v.delivered, v.undelivered.count) == (0, 0, 2)
    assert v.lost.count == 0


def test_producers_that_never_ran_to_their_end_fail_the_run() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0))),
        producer("producer-0.1", Send("b", "k")),
        polled_all((0, 0, "a")),
        reader((0, 0, "a")),
    ])
    assert v.incomplete == Finding(1, (
        "no producer ran to its end: 2 incarnations recorded, none stopped cleanly when told "
        "to (each was killed or ended by itself)",))
    assert [n for n, f in v.anomalies.items() if f.count] == ["incomplete"]


def test_a_member_starting_below_a_commit_confirmed_before_its_assignment_has_rewound() -> None:
    acked = sent_and_acked("producer-0.0", *((f"v{i}", 0, i) for i in range(6)))
    v = analyse([
        producer("producer-0.0", *acked, Stopped()),
        member("consumer-0.0", Assigned((0,), 10.0),
               poll(*((0, i, f"v{i}") for i in range(5))), Commit(((0, 5),), 11.0),
               Revoked((0,), 12.0)),
        # a new member after the commit: must start at 5, re-reads from 0
        member("consumer-1.0", Assigned((0,), 13.0), poll((0, 0, "v0"), (0, 1, "v1")),
               poll((0, 5, "v5")), Commit(((0, 6),), 14.0)),
        # assigned before the commit was confirmed: may start from 0
        member("consumer-2.0", Assigned((0,), 10.5), poll((0, 0, "v0")), Revoked((0,), 10.6)),
        reader(*((0, i, f"v{i}") for i in range(6))),
    ])
    assert v.rewound == Finding(1, (
        "consumer-1.0 started partition 0 at offset 0 after its assignment, below offset 5 "
        "the group had committed before it",))
    assert v.backwards.count == 0  # each life's offsets only increase
    assert [n for n, f in v.anomalies.items() if f.count] == ["rewound"]


def test_a_poll_of_a_value_the_final_read_has_elsewhere_at_that_offset_is_a_conflict() -> None:
    v = analyse([
        producer("producer-0.0", Send("a", "k"), Send("b", "k"), Stopped()),  # no acks
        member("consumer-0.0", Assigned((0,)), poll((0, 0, "a"), (0, 1, "a"))),
        reader((0, 0, "a"), (0, 1, "b")),
    ])
    assert v.conflicting == Finding(1, (
        "0@1 holds two values: 'a' (polled by consumer-0.0); 'b' (in the final read)",))
    assert [n for n, f in v.anomalies.items() if f.count] == ["conflicting"]


def test_a_final_read_returning_one_record_twice_is_found() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0), ("b", 0, 1)),
                 Stopped()),
        polled_all((0, 0, "a"), (0, 1, "b")),
        History("reader", (Read((Seen(0, 0, "a"), Seen(0, 1, "b"))), Read((Seen(0, 1, "b"),)))),
    ])
    assert v.read_twice == Finding(1, ("the final read returned 0@1 ('b') 2 times",))
    assert (v.stored, v.stored_values, v.duplicated.count) == (2, 2, 0)
    assert [n for n, f in v.anomalies.items() if f.count] == ["read_twice"]


def test_a_stored_value_no_producer_sent_is_unexpected() -> None:
    v = analyse([
        producer("producer-0.0", *sent_and_acked("producer-0.0", ("a", 0, 0))),
        reader((0, 0, "a"), (0, 1, "zz")),
    ])
    assert v.unexpected == Finding(1, ("'zz' stored at 0@1 but never sent",))
    assert not v.passed


def test_examples_are_capped_while_the_count_stays_exact() -> None:
    values = [(f"v{i:02d}", 0, i) for i in range(10)]
    v = analyse([producer("producer-0.0", *sent_and_acked("producer-0.0", *values)),
                 reader()])
    assert v.lost.count == 10
    assert len(v.lost.examples) == EXAMPLES
    assert v.lost.examples[0].startswith("'v00' ")


def test_a_history_file_survives_a_cut_last_line(tmp_path: Path) -> None:
    path = tmp_path / "producer-0.0.jsonl"
    with HistoryWriter(path) as out:
        out.write(Send("a", "k0"))
        out.write(Ack("a", 2, 7))
        out.write(Assigned((1, 4), 123.25))
        out.write(Poll((Seen(1, 2, "x"),)))
        out.write(Commit(((1, 3),), 124.5))
        out.write(Revoked((1,), 125.0))
        out.write(Stopped())
    with open(path, "a") as f:
        f.write('{"op":"ack","v":"b","p":0,')  # a SIGKILL in the middle of a write
    history = read_history(path)
    assert history.process == "producer-0.0"
    assert history.events == (Send("a", "k0"), Ack("a", 2, 7), Assigned((1, 4), 123.25),
                              Poll((Seen(1, 2, "x"),)), Commit(((1, 3),), 124.5),
                              Revoked((1,), 125.0), Stopped())


def test_a_damaged_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "consumer-0.0.jsonl"
    path.write_text('{"op":"send","v":"a","k":"k"}\n{"op":"nope"}\n')
    with pytest.raises(ValueError, match=r"consumer-0.0.jsonl:2: unknown operation 'nope'"):
        read_history(path)
