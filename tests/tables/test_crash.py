"""Crash safety of the materializer: killed anywhere, the table equals its stream replayed up to
the offsets stored with it, and the next run finishes the job.

The materializer runs in a child process (``tests.tables.worker``) that dies at the named
fault points ``tables.materialize.before_commit`` / ``after_commit`` (``MILLSTREAM_FAULT``)
or by SIGKILL at random moments; after every death the parent compares the table with a
replay of the stream up to the stored offsets.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import millstream
from millstream.faults import FAULT_EXIT_CODE
from millstream.tables import open_tables
from tests.support.waiting import wait_until
from tests.tables.helpers import produce_feed, replay

pytestmark = pytest.mark.multiprocess

REPO = Path(__file__).resolve().parents[2]
KILL_ROUNDS = int(os.environ.get("MILLSTREAM_KILL_ROUNDS", "6"))
SEED = int(os.environ.get("MILLSTREAM_TEST_SEED", "0")) or random.randrange(1, 2**31)
BATCH = 97
RECORDS = 20_000
#: how many batches past its kill point a worker to be killed may commit before it pauses
PAST_KILL = 3


class Worker:
    def __init__(self, args: list[str], out: Path, fault: str | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("MILLSTREAM_FAULT", None)
        if fault:
            env["MILLSTREAM_FAULT"] = fault
        self.out = out
        with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.tables.worker", *args],
                                         cwd=REPO, stdout=stdout, stderr=stderr, env=env)

    def lines(self) -> list[str]:
        text = self.out.read_text()
        return (text if text.endswith("\n") else text.rpartition("\n")[0]).splitlines()

    def batches(self) -> int:
        return sum(1 for line in self.lines() if line.startswith("B "))

    def stderr(self) -> str:
        return self.out.with_suffix(".err").read_text(errors="replace")[-3000:]

    def wait_batches(self, n: int) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early ({self.proc.returncode}):\n"
                                     + self.stderr())
            return self.batches() >= n
        wait_until(ready, 60, f"{n} batches", interval=0.002)

    def wait(self) -> int:
        return self.proc.wait(60)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)


def test_killed_anywhere_the_table_equals_the_replay_up_to_its_offsets(
        tmp_path: Path, streams_url: str, tables_url: str) -> None:
    print(f"random choices from MILLSTREAM_TEST_SEED={SEED}")
    rng = random.Random(SEED)
    with millstream.open_streams(streams_url) as streams:
        streams.admin().create_stream("feed", partitions=3)
        produce_feed(streams, "feed", RECORDS, keys=2000, seed=SEED)
    args = [streams_url, tables_url, "orders", "feed", str(BATCH)]
    plan = (["kill"] * KILL_ROUNDS + ["tables.materialize.before_commit"] * 2
            + ["tables.materialize.after_commit"] * 2)
    rng.shuffle(plan)
    previous = -1
    # the rounds together must not reach the stream's end (206 batches), or a later fault
    # round finds too little left to reach its fault point: a fault round commits at most
    # 16 batches, a kill round at most PAST_KILL more than it waits for (the worker pauses
    # there: a parent held up by a loaded machine let it run on to the end), so at most
    # 4 × 16 + 6 × (15 + PAST_KILL) = 172 with the default KILL_ROUNDS
    for rnd, how in enumerate(plan):
        nth = rng.randint(2, 16)
        fault = None if how == "kill" else f"{how}:{nth}"
        kill_after = rng.randint(1, 15)
        worker = Worker([*args, str(kill_after + PAST_KILL)] if how == "kill" else args,
                        tmp_path / f"round{rnd}.out", fault)
        try:
            if how == "kill":
                worker.wait_batches(kill_after)
                assert worker.kill() == -signal.SIGKILL
            else:
                assert worker.wait() == FAULT_EXIT_CODE, worker.stderr()
                assert f"fault point {how!r} reached" in worker.stderr()
                assert worker.batches() == nth - 1  # died inside its nth batch
        finally:
            worker.kill()
        with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables:
            table = tables.table("orders")
            offsets = table.offsets()
            done = sum(offsets.values())
            assert done > previous or how == "kill", f"round {rnd} ({how}) made no progress"
            previous = done
            assert dict(table.scan()) == replay(streams, "feed", offsets), f"round {rnd} ({how})"
    worker = Worker(args, tmp_path / "final.out")
    assert worker.wait() == 0, worker.stderr()
    assert worker.lines()[-1] == "DONE"
    with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables:
        table = tables.table("orders")
        assert sum(table.offsets().values()) == RECORDS
        assert dict(table.scan()) == replay(streams, "feed")
        expected = {k for k, d in replay(streams, "feed").items() if d["colour"] == "blue"}
        assert {k for k, _ in table.query({"colour": "blue"})} == expected
