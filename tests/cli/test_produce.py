"""`millstream produce`: lines in, one record each, and an honest acknowledgement count."""

from __future__ import annotations

from pathlib import Path

from millstream import Record, Streams
from millstream.streams._partitioner import partition_for_key
from tests.cli.conftest import Invoke


def read_all(streams: Streams, stream: str) -> list[Record]:
    with streams.open_consumer() as consumer:
        consumer.subscribe([stream])
        out: list[Record] = []
        while batch := consumer.poll(timeout=0.2):
            out.extend(batch)
    return sorted(out, key=lambda r: (r.partition, r.offset))


def test_keyed_lines_go_to_their_murmur2_partitions(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "orders", "--partitions", "4")
    result = run("produce", "orders", "--key-separator", "=>",
                 input="k1=>v1\nk3=>a=>b\nk1=>v3\n")

    records = read_all(streams, "orders")
    assert sorted((r.key, r.value) for r in records) == [
        (b"k1", b"v1"), (b"k1", b"v3"), (b"k3", b"a=>b")
    ]
    for r in records:
        assert r.partition == partition_for_key(r.key or b"", 4)
    k1, k3 = partition_for_key(b"k1", 4), partition_for_key(b"k3", 4)
    assert k1 != k3  # the summary below then has two partitions
    spans = {k1: f"partition {k1}: 2 (offsets 0..1)", k3: f"partition {k3}: 1 (offsets 0..0)"}
    assert result.stdout == (
        "acknowledged 3 records to stream 'orders': "
        + ", ".join(spans[p] for p in sorted(spans)) + "\n"
    )


def test_a_file_is_read_line_by_line_and_empty_lines_are_skipped(
    run: Invoke, streams: Streams, tmp_path: Path
) -> None:
    run("streams", "create", "lines")
    source = tmp_path / "input.txt"
    source.write_bytes(b"first\r\n\nsecond\nthird")
    result = run("produce", "lines", str(source))
    assert result.stdout == (
        "acknowledged 3 records to stream 'lines': partition 0: 3 (offsets 0..2)\n"
    )
    assert "skipped 1 empty line(s)" in result.stderr
    assert [(r.key, r.value) for r in read_all(streams, "lines")] == [
        (None, b"first"), (None, b"second"), (None, b"third")
    ]


def test_partition_option_sends_everything_there(run: Invoke, streams: Streams) -> None:
    run("streams", "create", "orders", "--partitions", "3")
    result = run("produce", "orders", "--partition", "2", "-k", ":", input="a:1\nb:2\nc:3\n")
    assert result.stdout.endswith("partition 2: 3 (offsets 0..2)\n")
    assert [p.end for p in streams.admin().describe_stream("orders").partitions] == [0, 0, 3]


def test_partition_out_of_range_is_a_usage_error_naming_the_range(run: Invoke) -> None:
    run("streams", "create", "orders", "--partitions", "2")
    result = run("produce", "orders", "--partition", "5", input="x\n", code=2)
    assert "Invalid value for '--partition': 5 is out of range: stream 'orders' has " \
           "partitions 0..1" in result.stderr


def test_a_line_without_separator_stops_after_reporting_what_was_stored(
    run: Invoke, streams: Streams
) -> None:
    run("streams", "create", "orders")
    result = run("produce", "orders", "-k", ":", input="a:1\nno separator here\nc:3\n", code=1)
    assert result.stdout == (
        "acknowledged 1 record to stream 'orders': partition 0: 1 (offsets 0..0)\n"
    )
    assert "error: line 2 has no key separator ':'" in result.stderr
    assert [(r.key, r.value) for r in read_all(streams, "orders")] == [(b"a", b"1")]


def test_a_record_over_the_limit_is_refused_and_earlier_ones_are_kept(
    run: Invoke, streams: Streams
) -> None:
    run("streams", "create", "orders")
    big = "x" * (1024 * 1024 + 1)
    result = run("produce", "orders", input=f"small\n{big}\n", code=1)
    assert result.stdout.startswith("acknowledged 1 record ")
    assert "exceeds the limit of 1048576 bytes" in result.stderr
    assert [r.value for r in read_all(streams, "orders")] == [b"small"]


def test_unknown_stream_is_reported_before_reading_input(run: Invoke) -> None:
    result = run("produce", "nope", input="never read\n", code=1)
    assert result.stdout == ""
    assert result.stderr.startswith("error: stream 'nope' does not exist")


def test_empty_input_acknowledges_nothing(run: Invoke) -> None:
    run("streams", "create", "orders")
    result = run("produce", "orders", input="")
    assert result.stdout == "acknowledged 0 records to stream 'orders'\n"


def test_missing_file_is_a_usage_error(run: Invoke) -> None:
    run("streams", "create", "orders")
    result = run("produce", "orders", "does-not-exist.txt", code=2)
    assert "'does-not-exist.txt'" in result.stderr
