"""The worker fleet of ``millstream verify``: a worker that dies by itself is restarted, but
at most once a second per slot, and why it died is kept."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from millstream._verify.fleet import RESTART_PAUSE_S, Fleet


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
