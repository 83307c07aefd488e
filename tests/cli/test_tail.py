"""`millstream tail`: where it starts, how it prints, and that it follows."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from millstream import Streams
from tests.cli.conftest import Invoke
from tests.support.waiting import wait_until

MILLSTREAM = Path(sys.executable).with_name("millstream")


def values(stdout: str) -> list[str]:
    """The value part of each text-mode record line (``stream[p]@offset  value``)."""
    return [line.split("  ", 1)[1] for line in stdout.splitlines()]


def test_from_beginning_with_max_prints_exactly_those_values_in_order(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="one\ntwo\nthree\nfour\nfive\n")
    result = run("tail", "log", "--from", "beginning", "--max", "3")
    assert result.stdout.splitlines() == ["log[0]@0  one", "log[0]@1  two", "log[0]@2  three"]
    assert result.stderr == "3 record(s) from log\n"


def test_default_without_group_is_the_beginning_and_stops_at_the_end(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\n")
    assert values(run("tail", "log").stdout) == ["a", "b"]


def test_from_offset_and_from_end(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\nc\nd\n")
    assert run("tail", "log", "--from", "2").stdout.splitlines() == ["log[0]@2  c", "log[0]@3  d"]
    assert run("tail", "log", "--from", "4").stdout == ""
    assert run("tail", "log", "--from", "end").stdout == ""


def test_from_an_iso_time_starts_at_the_first_record_at_or_after_it(
    run: Invoke, streams: Streams
) -> None:
    streams.admin().create_stream("log")
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    with streams.open_producer() as producer:
        for i in range(4):
            producer.send("log", f"at+{i}s".encode(), timestamp=base + i * 1000)
    result = run("tail", "log", "--from", "2026-01-01T00:00:02Z")
    assert values(result.stdout) == ["at+2s", "at+3s"]
    result = run("tail", "log", "--from", "2026-01-01T01:00:02+01:00")
    assert values(result.stdout) == ["at+2s", "at+3s"]


def test_keys_json_binary_and_tombstones_are_each_shown_readably(
    run: Invoke, streams: Streams
) -> None:
    streams.admin().create_stream("mixed")
    with streams.open_producer() as producer:
        producer.send("mixed", b'{"id": 7, "tags": ["a", "b"]}', key=b"user-7")
        producer.send("mixed", b"\x00\xffraw")
        producer.send("mixed", b"bell\x07 and\nnewline")
        producer.send("mixed", None, key=b"gone")
    lines = run("tail", "mixed").stdout.splitlines()
    assert lines[0] == "mixed[0]@0  key=user-7"
    end = lines.index("}") + 1
    assert json.loads("\n".join(lines[1:end])) == {"id": 7, "tags": ["a", "b"]}
    assert lines[1:3] == ["{", '  "id": 7,']  # pretty-printed, two-space indent
    assert lines[end:] == [
        "mixed[0]@1  b'\\x00\\xffraw'",
        "mixed[0]@2  bell\\x07 and\\nnewline",
        "mixed[0]@3  key=gone  (tombstone)",
    ]


def test_json_lines_output(run: Invoke, streams: Streams) -> None:
    streams.admin().create_stream("log")
    with streams.open_producer() as producer:
        producer.send("log", b'{"a": 1}', key=b"k", timestamp=1_700_000_000_000,
                      headers=(("trace", b"t-1"),))
        producer.send("log", b"\xff", timestamp=1_700_000_000_001)
    lines = [json.loads(line) for line in run("tail", "log", "--json").stdout.splitlines()]
    assert lines == [
        {"stream": "log", "partition": 0, "offset": 0, "timestamp": 1_700_000_000_000,
         "key": "k", "value": '{"a": 1}', "headers": {"trace": "t-1"}},
        {"stream": "log", "partition": 0, "offset": 1, "timestamp": 1_700_000_000_001,
         "key": None, "value": "/w==", "value_encoding": "base64"},
    ]


def test_bad_from_values_are_usage_errors_naming_the_value(run: Invoke) -> None:
    run("streams", "create", "log")
    result = run("tail", "log", "--from", "yesterday", code=2)
    assert "Invalid value for '--from': 'yesterday' is not 'beginning', 'end', an offset" \
        in result.stderr
    result = run("tail", "log", "--from", "-5", code=2)
    assert "-5 is negative; offsets start at 0" in result.stderr


def test_offset_past_the_end_names_the_ends(run: Invoke) -> None:
    run("streams", "create", "log")
    run("produce", "log", input="a\nb\n")
    result = run("tail", "log", "--from", "7", code=1)
    assert result.stderr.splitlines() == [
        "error: --from 7 is past the end of every partition (log[0] ends at 2); give a "
        "smaller offset, or --from end to wait for new records"
    ]


def test_unknown_stream(run: Invoke) -> None:
    result = run("tail", "nope", code=1)
    assert result.stderr.startswith("error: stream 'nope' does not exist")


def test_follow_prints_records_written_after_it_started(streams: Streams) -> None:
    streams.admin().create_stream("live")
    with streams.open_producer() as producer:
        producer.send("live", b"old").wait()
    proc = subprocess.Popen(
        [str(MILLSTREAM), "tail", "live", "--from", "end", "--follow", "--max", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The tail has joined once the group-less consumer is reading; wait until new records
        # are seen by polling: write until the process has printed both and exited.
        with streams.open_producer() as producer:
            def finished() -> bool:
                if proc.poll() is None:
                    producer.send("live", b"new").wait()
                return proc.poll() is not None
            wait_until(finished, timeout=20, what="tail --follow to print 2 new records",
                       interval=0.2)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert values(out) == ["new", "new"]
    assert "old" not in out
