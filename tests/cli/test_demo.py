"""``millstream demo`` runs end to end on a fresh local log, and again on the same log."""

from __future__ import annotations

from pathlib import Path

import pytest

import millstream
from millstream.cli import _demo as demo
from tests.cli.conftest import Invoke


def _ends(url: str) -> dict[int, int]:
    with millstream.open_streams(url) as streams:
        return {p.partition: p.end for p in streams.admin().describe_stream(demo.STREAM).partitions}


def _committed(url: str) -> dict[int, int | None]:
    with millstream.open_streams(url) as streams:
        info = streams.admin().describe_group(demo.GROUP)
    return {p.partition: p.committed for p in info.partitions if p.stream == demo.STREAM}


@pytest.mark.multiprocess
def test_demo_produces_and_consumes_exactly_its_records(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"

    assert demo.run(url, 5000) == 0
    first = _ends(url)
    assert len(first) == demo.PARTITIONS
    assert sum(first.values()) == 5000
    assert _committed(url) == first

    # A second run appends to the same stream and counts only its own records.
    assert demo.run(url, 5000) == 0
    second = _ends(url)
    assert sum(second.values()) - sum(first.values()) == 5000
    assert _committed(url) == second


def test_demo_refuses_a_negative_count(tmp_path: Path) -> None:
    assert demo.run(f"local:{tmp_path / 'log'}", -1) == 2


@pytest.mark.multiprocess
def test_the_demo_command_runs_the_demo_on_the_streams_it_is_given(
        run: Invoke, tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    run("--streams", url, "demo", "--records", "600")
    ends = _ends(url)
    assert (len(ends), sum(ends.values())) == (demo.PARTITIONS, 600)
    assert _committed(url) == ends
