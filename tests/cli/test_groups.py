"""`millstream groups`: list, describe (committed, end, lag, owner) and reset."""

from __future__ import annotations

import datetime
import time

from millstream import StreamPartition, Streams
from millstream.streams._partitioner import partition_for_key
from tests.cli.conftest import Invoke
from tests.cli.parsing import row, rows
from tests.support.waiting import wait_until


def test_tail_with_group_commits_and_describe_shows_offsets_and_lag(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\nc\nd\ne\n")
    result = run("tail", "log", "--group", "audit", "--max", "2")
    assert result.stdout.splitlines() == ["log[0]@0  a", "log[0]@1  b"]

    out = run("groups", "describe", "audit").stdout
    assert out.splitlines()[0] == "group audit: 0 live member(s), total lag 3"
    assert row(out, "Stream") == ["Stream", "Partition", "Committed", "End", "Lag", "Owner"]
    assert row(out, "log") == ["log", "0", "2", "5", "3", "-"]

    # The group resumes where it committed.
    assert run("tail", "log", "--group", "audit").stdout.splitlines() == [
        "log[0]@2  c", "log[0]@3  d", "log[0]@4  e"
    ]
    assert row(run("groups", "describe", "audit").stdout, "log") == [
        "log", "0", "5", "5", "0", "-"
    ]


def test_describe_covers_every_partition_of_a_keyed_stream(run: Invoke) -> None:
    run("streams", "create", "orders", "--partitions", "3")
    keys = ["alice", "bob", "carol", "dave", "erin"]
    run("produce", "orders", "-k", ":", input="".join(f"{k}:x\n" for k in keys))
    ends = dict.fromkeys(range(3), 0)
    for k in keys:
        ends[partition_for_key(k.encode(), 3)] += 1
    run("tail", "orders", "--group", "g", "--from", "end")

    table = [r for r in rows(run("groups", "describe", "g").stdout) if r[0] == "orders"]
    assert table == [
        ["orders", str(p), str(ends[p]), str(ends[p]), "0", "-"] for p in range(3)
    ]


def test_list_shows_groups_members_streams_and_lag(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\nc\n")
    run("tail", "log", "--group", "one", "--max", "1")
    run("tail", "log", "--group", "two")
    out = run("groups", "list").stdout
    assert row(out, "Group") == ["Group", "Members", "Streams", "Lag"]
    assert row(out, "one") == ["one", "0", "log", "2"]
    assert row(out, "two") == ["two", "0", "log", "0"]


def test_list_with_no_groups_says_how_one_appears(run: Invoke) -> None:
    result = run("groups", "list")
    assert result.stdout == ""
    assert "millstream tail STREAM --group GROUP" in result.stderr


def test_describe_shows_live_members_and_their_partitions(run: Invoke, streams: Streams) -> None:
    streams.admin().create_stream("log", partitions=2)
    with streams.open_consumer("live") as consumer:
        consumer.subscribe(["log"])
        wait_until(lambda: len(consumer.assignment()) == 2, 10, "both partitions assigned")
        consumer.commit()
        out = run("groups", "describe", "live").stdout
    lines = out.splitlines()
    assert lines[0] == "group live: 1 live member(s), total lag 0"
    member = next(r for r in rows(out) if r[-1] == "log[0], log[1]")
    member_id = member[0]
    parts = [r for r in rows(out) if r[0] == "log"]
    assert parts == [["log", "0", "0", "0", "0", member_id], ["log", "1", "0", "0", "0", member_id]]


def test_describe_unknown_group_is_an_error(run: Invoke) -> None:
    result = run("groups", "describe", "nobody", code=1)
    assert result.stderr.startswith("error: group 'nobody' has no live members and no committed")


def test_reset_to_earliest_latest_and_an_offset(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\nc\nd\n")
    run("tail", "log", "--group", "g")
    sp = StreamPartition("log", 0)

    out = run("groups", "reset", "g", "log", "--to", "earliest").stdout
    assert out.splitlines()[0] == "group g now reads log from:"
    assert row(out, "0") == ["0", "0"]
    info = streams.admin().describe_group("g")
    assert [(p.stream, p.partition, p.committed, p.lag) for p in info.partitions] == [
        ("log", 0, 0, 4)
    ]
    assert row(run("groups", "describe", "g").stdout, "log") == ["log", "0", "0", "4", "4", "-"]
    assert [line.split("  ")[1] for line in run("tail", "log", "-g", "g").stdout.splitlines()] \
        == ["a", "b", "c", "d"]

    assert streams.admin().reset_offsets("g", "log", 1) == {sp: 1}
    run("groups", "reset", "g", "log", "--to", "3")
    assert streams.admin().describe_group("g").partitions[0].committed == 3
    run("groups", "reset", "g", "log", "--to", "latest")
    assert streams.admin().describe_group("g").partitions[0].committed == 4


def test_reset_to_an_offset_outside_the_range_names_the_range(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\n")
    result = run("groups", "reset", "g", "log", "--to", "9", code=1)
    assert result.stderr.startswith("error: offset 9 is outside log[0]'s retained range 0..2")


def test_reset_is_refused_while_the_group_has_live_members(
    run: Invoke, streams: Streams
) -> None:
    streams.admin().create_stream("log")
    with streams.open_consumer("busy") as consumer:
        consumer.subscribe(["log"])
        result = run("groups", "reset", "busy", "log", "--to", "earliest", code=1)
    assert result.stderr.startswith("error: group 'busy' has 1 live member(s)")
    assert "stop them" in result.stderr
    # Once the member has left, the reset goes through.
    run("groups", "reset", "busy", "log", "--to", "earliest")


def test_reset_bad_target_and_unknown_stream(run: Invoke) -> None:
    result = run("groups", "reset", "g", "log", "--to", "first", code=2)
    assert "Invalid value for '--to': 'first' is not 'beginning', 'end', an offset" \
        in result.stderr
    result = run("groups", "reset", "g", "nope", "--to", "earliest", code=1)
    assert result.stderr.startswith("error: stream 'nope' does not exist")


def test_tail_says_when_other_members_own_every_partition(run: Invoke, streams: Streams) -> None:
    streams.admin().create_stream("log")
    with streams.open_producer() as producer:
        producer.send("log", b"a")
    with streams.open_consumer("shared") as consumer:
        consumer.subscribe(["log"])
        result = run("tail", "log", "--group", "shared")
    assert result.stdout == ""
    assert result.stderr == (
        "0 record(s) from log; group 'shared' committed past them (this member got no "
        "partitions: other live members of the group own them)\n"
    )


def test_reset_by_time_and_for_every_stream_of_the_group(run: Invoke, streams: Streams) -> None:
    admin = streams.admin()
    admin.create_stream("a", 2)
    admin.create_stream("b")
    with streams.open_producer() as producer:
        for i in range(6):  # an hour ago: offsets 0..5 spread over a's partitions and b
            producer.send("a", f"old{i}".encode(), partition=i % 2,
                          timestamp=int(time.time() * 1000) - 3_600_000 + i)
            producer.send("b", f"old{i}".encode(), timestamp=int(time.time() * 1000) - 3_600_000)
        for i in range(4):  # now
            producer.send("a", f"new{i}".encode(), partition=i % 2)
            producer.send("b", f"new{i}".encode())
    with streams.open_consumer("g") as consumer:
        consumer.subscribe(["a", "b"])
        while consumer.poll(max_records=100, timeout=0.2):
            pass
        consumer.commit()
    # a time 30 minutes ago: the first record at or after it is the first "new" one
    result = run("groups", "reset", "g", "a", "--to", "30m")
    assert "group g now reads a from:" in result.stdout
    committed = {(p.stream, p.partition): p.committed for p in admin.describe_group(
        "g").partitions}
    assert committed == {("a", 0): 3, ("a", 1): 3, ("b", 0): 10}
    # without a stream: every stream the group has read; an ISO time before everything
    early = datetime.datetime.fromtimestamp(time.time() - 7200).strftime("%Y-%m-%dT%H:%M:%S")
    run("groups", "reset", "g", "--to", early)
    committed = {(p.stream, p.partition): p.committed for p in admin.describe_group(
        "g").partitions}
    assert committed == {("a", 0): 0, ("a", 1): 0, ("b", 0): 0}
    # a time after everything: the end
    run("groups", "reset", "g", "--to", datetime.datetime.fromtimestamp(
        time.time() + 600).isoformat(timespec="seconds"))
    committed = {(p.stream, p.partition): p.committed for p in admin.describe_group(
        "g").partitions}
    assert committed == {("a", 0): 5, ("a", 1): 5, ("b", 0): 10}


def test_reset_one_partition_keeps_the_others_committed_offsets(
    run: Invoke, streams: Streams
) -> None:
    admin = streams.admin()
    admin.create_stream("log", 3)
    with streams.open_producer() as producer:
        for i in range(12):
            producer.send("log", f"r{i}".encode(), partition=i % 3)
    run("tail", "log", "--group", "g")  # reads and commits all: 4 per partition
    out = run("groups", "reset", "g", "log", "--partition", "1", "--to", "beginning").stdout
    assert out.splitlines()[0] == "group g now reads log from:"
    assert [r for r in rows(out) if r[0].isdigit()] == [["1", "0"]]  # only partition 1
    committed = {p.partition: p.committed for p in admin.describe_group("g").partitions}
    assert committed == {0: 4, 1: 0, 2: 4}
    run("groups", "reset", "g", "log", "--partition", "2", "--to", "3")
    committed = {p.partition: p.committed for p in admin.describe_group("g").partitions}
    assert committed == {0: 4, 1: 0, 2: 3}


def test_reset_one_partition_is_refused_without_a_stream_or_a_committed_offset_to_keep(
    run: Invoke, streams: Streams
) -> None:
    admin = streams.admin()
    admin.create_stream("log", 2)
    result = run("groups", "reset", "g", "--partition", "0", "--to", "end", code=1)
    assert result.stderr.startswith(
        "error: partition 0 of which stream? Name the stream to reset one partition")
    result = run("groups", "reset", "g", "log", "--partition", "5", "--to", "end", code=1)
    assert result.stderr.startswith(
        "error: stream 'log' has no partition 5: its partitions are 0..1")
    admin.reset_offsets("g", "log", {0: 0, 1: 0})
    run("groups", "reset", "g", "log", "--partition", "0", "--to", "end")
    admin.create_stream("other", 2)
    with streams.open_producer() as producer:
        producer.send("other", b"x", partition=0)
    with streams.open_consumer("h") as consumer:  # commits partition 0 only
        consumer.subscribe(["other"])
        while consumer.poll(max_records=10, timeout=0.2):
            pass
        consumer.commit({StreamPartition("other", 0): 1})
    result = run("groups", "reset", "h", "other", "--partition", "0", "--to", "beginning",
                 code=1)
    assert result.stderr.startswith(
        "error: group 'h' has no committed offset on 'other' partition(s) 1, so resetting "
        "only partition 0 would have to invent one; reset the whole stream instead")
