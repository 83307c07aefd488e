"""The worker fleet of ``millstream verify``: a worker that dies by itself is restarted, but
at most once a second per slot, and why it died is kept; a worker stopped as soon as it was
started still stops cleanly."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import millstream
from millstream._verify.fleet import RESTART_PAUSE_S, Fleet
from millstream._verify.history import Stopped, read_history


def test_a_worker_that_cannot_start_is_restarted_at_most_once_a_second(tmp_path: Path) -> None:
    # a Python that cannot find its standard library dies within milliseconds of starting
    env = {**os.environ, "PYTHONHOME": str(tmp_path / "no-such-python")}
    fleet = Fleet("local:", "s", tmp_path, env)
    began = [fleet.start("producer", 0).started]
    # restarted until it was started four times, however long a loaded machine takes (a
    # count within a fixed 3.5 s fails when two starts are held up); each start at least
    # RESTART_PAUSE_S (1 s) after the one before
    deadline = time.monotonic() + 60
    while len(began) < 4:
        assert time.monotonic() < deadline, began
        fleet.restart_exited()
        (worker,) = fleet.workers
        if worker.started != began[-1]:
            began.append(worker.started)
        time.sleep(0.02)
    fleet.stop(5)
    assert min(b - a for a, b in itertools.pairwise(began)) >= RESTART_PAUSE_S, began
    starts = sorted(p.name for p in tmp_path.glob("producer-0.*.err"))
    assert len(starts) == 4, starts
    assert len(fleet.exits) == len(starts)
    assert {e.returncode for e in fleet.exits} == {1}
    assert [e.name for e in fleet.exits] == [s.removesuffix(".err") for s in starts]


def test_a_worker_that_died_by_itself_is_reported_with_its_last_error_line(
        tmp_path: Path) -> None:
    fleet = Fleet("nope:", "s", tmp_path, dict(os.environ))
    first = fleet.start("consumer", 2)
    first.proc.wait(60)
    time.sleep(max(0.0, first.started + 1.0 - time.monotonic()))
    fleet.restart_exited()
    fleet.kill_all()
    assert [w.name for w in fleet.workers] == []
    assert len(fleet.exits) == 1
    assert fleet.exits[0].name == "consumer-2.0"
    assert fleet.exits[0].returncode == 1
    assert fleet.exits[0].last_line.startswith(
        "millstream.errors.ConfigError: streams URL 'nope:' has scheme 'nope'")
    assert sorted(p.name for p in tmp_path.glob("*.err")) == ["consumer-2.0.err",
                                                              "consumer-2.1.err"]


def test_workers_stopped_as_soon_as_started_each_stop_cleanly(tmp_path: Path) -> None:
    """A stop right after a (re)start waits for each worker to begin, so that it stops
    cleanly instead of dying of SIGTERM while importing, without a history: a short run whose
    restarted producers died so had no producer that ran to its end (seen in CI)."""
    url = f"local:{tmp_path / 'log'}"
    with millstream.open_streams(url) as streams:
        streams.admin().create_stream("s", partitions=2)
    fleet = Fleet(url, "s", tmp_path, dict(os.environ))
    for slot in range(2):
        fleet.start("producer", slot)
        fleet.start("consumer", slot)
    fleet.stop(60)
    assert fleet.exits == []
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert names == ["consumer-0.0.jsonl", "consumer-1.0.jsonl",
                     "producer-0.0.jsonl", "producer-1.0.jsonl"]
    for name in names:
        assert read_history(tmp_path / name).events[-1] == Stopped(), name
