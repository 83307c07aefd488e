"""`millstream streams`: create, list, describe, delete."""

from __future__ import annotations

from millstream import Retention, Streams
from millstream.streams._partitioner import partition_for_key
from tests.cli.conftest import Invoke
from tests.cli.parsing import row, rows


def test_create_then_list_shows_partitions_records_and_retention(run: Invoke) -> None:
    result = run("streams", "create", "orders", "--partitions", "4")
    assert result.stdout == "created stream 'orders': 4 partitions, retention forever\n"
    run("streams", "create", "audit", "--retention-ms", "604800000",
        "--retention-bytes", "1000000", "--compact")
    run("produce", "orders", input="a\nb\nc\n")

    listing = run("streams", "list").stdout
    assert rows(listing)[0] == ["Stream", "Partitions", "Records", "Retention"]
    assert row(listing, "orders") == ["orders", "4", "3", "forever"]
    assert row(listing, "audit") == ["audit", "1", "0", "7d, 1.0 MB/partition, compacted"]


def test_create_stores_the_retention_given(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "events", "-p", "2", "--retention-ms", "5400000",
        "--retention-bytes", "4096")
    info = streams.admin().describe_stream("events")
    assert info.partition_count == 2
    assert info.retention == Retention(max_age=5400, max_bytes=4096)


def test_list_with_no_streams_says_how_to_create_one(run: Invoke) -> None:
    result = run("streams", "list")
    assert result.stdout == ""
    assert "millstream streams create NAME" in result.stderr


def test_describe_shows_each_partitions_end_offset_for_keyed_records(run: Invoke) -> None:
    run("streams", "create", "orders", "--partitions", "3")
    keys = [b"alice", b"bob", b"carol"]
    run("produce", "orders", "--key-separator", ":",
        input="alice:1\nbob:2\ncarol:3\n")

    expected = dict.fromkeys(range(3), 0)
    for key in keys:
        expected[partition_for_key(key, 3)] += 1
    out = run("streams", "describe", "orders").stdout
    assert out.splitlines()[0] == "stream orders: 3 partition(s), 3 record(s), retention forever"
    for p in range(3):
        partition, start, end, records, _ = row(out, str(p))
        assert (partition, start, end, records) == (str(p), "0", str(expected[p]),
                                                    str(expected[p]))


def test_describe_unknown_stream_names_it_and_how_to_create_it(run: Invoke) -> None:
    result = run("streams", "describe", "nope", code=1)
    assert result.stdout == ""
    assert result.stderr.startswith("error: stream 'nope' does not exist")
    assert "millstream streams create nope" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_create_twice_is_a_one_line_error(run: Invoke) -> None:
    run("streams", "create", "orders")
    result = run("streams", "create", "orders", code=1)
    assert result.stderr.splitlines() == [
        "error: stream 'orders' already exists; use ensure_stream to accept that, "
        "or delete it first"
    ]


def test_create_with_a_bad_name_names_the_bad_character(run: Invoke) -> None:
    result = run("streams", "create", "my orders", code=1)
    assert "stream name 'my orders' contains ' '" in result.stderr


def test_create_with_zero_partitions_is_a_usage_error(run: Invoke) -> None:
    result = run("streams", "create", "orders", "--partitions", "0", code=2)
    assert "Invalid value for '-p' / '--partitions': 0 is not in the range x>=1" in result.stderr


def test_delete_asks_and_keeps_the_stream_when_refused(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "orders")
    run("produce", "orders", input="a\nb\n")
    result = run("streams", "delete", "orders", input="n\n", code=1)
    assert "delete stream 'orders' and its 2 record(s)?" in result.stderr
    assert streams.admin().list_streams() == ["orders"]

    result = run("streams", "delete", "orders", input="y\n")
    assert result.stdout == "deleted stream 'orders' (2 record(s))\n"
    assert streams.admin().list_streams() == []


def test_delete_with_yes_does_not_ask(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "orders")
    result = run("streams", "delete", "orders", "--yes")
    assert result.stderr == ""
    assert streams.admin().list_streams() == []


def test_delete_unknown_stream_fails_before_asking(run: Invoke) -> None:
    result = run("streams", "delete", "nope", code=1)
    assert result.stderr.startswith("error: stream 'nope' does not exist")
