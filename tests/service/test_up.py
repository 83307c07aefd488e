"""``millstream up`` and ``millstream run --instances``: supervised processes, restart of a
killed one, and a clean stop of all on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import millstream
from millstream._wellknown import METRICS
from tests.service.test_crash import STREAMS_URL, N, committed, doubled_ids, produce_items
from tests.service.test_runtime import read_all
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess


def supervisor(*args: str, out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MILLSTREAM_STREAMS"] = STREAMS_URL
    env["MILLSTREAM_TEST_DELAY_MS"] = "3"
    env.pop("MILLSTREAM_FAULT", None)
    with open(out, "wb") as stdout:
        return subprocess.Popen([sys.executable, "-m", "millstream", *args], cwd=REPO, env=env,
                                stdout=stdout, stderr=subprocess.STDOUT)


def child_pids(parent: int) -> list[int]:
    """Python children of ``parent`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent:
            pids.append(int(entry.name))
    return sorted(pids)


def test_up_restarts_a_killed_service_and_stops_all_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "up.out"
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        proc = supervisor("up", "tests.support.apps:app", out=out)
        try:
            children = wait_until(lambda: len(child_pids(proc.pid)) == 3 and
                                  child_pids(proc.pid), 30, "three service processes")
            wait_until(lambda: committed(streams, "testapp.double") > 0, 30, "progress")
            victim = children[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(child_pids(proc.pid)) == 3 and victim not in
                       child_pids(proc.pid), 30, "the killed service to be restarted")
            for group in ("testapp.double", "testapp.double_eos", "testapp.summer"):
                wait_until(lambda g=group: committed(streams, g) >= N, 90,  # type: ignore[misc]
                           f"{group} to finish")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        log = out.read_text()
        assert code == 0, log
        assert "exited with signal 9" in log and "restarting in 0.5 s" in log
        assert "stopped 3 process(es); 1 restart(s)" in log
        assert child_pids(proc.pid) == []
        assert set(doubled_ids(streams, "doubled")) == set(range(N))
        eos = doubled_ids(streams, "doubled-eos")
        assert set(eos) == set(range(N)) and max(eos.values()) == 1
        finals = [json.loads(r.value or b"") for r in read_all(streams, METRICS)]
        finals = [m for m in finals if m["final"]]
        # every clean stop wrote its final metrics; the SIGKILLed one could not
        assert sorted(m["service"] for m in finals) == ["double", "double_eos", "summer"]
        for group in ("testapp.double", "testapp.double_eos", "testapp.summer"):
            info = streams.admin().describe_group(group)
            assert info.members == () and info.lag == 0


def test_run_with_instances_shares_the_group(tmp_path: Path) -> None:
    out = tmp_path / "run.out"
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        proc = supervisor("run", "tests.support.apps:app", "double", "--instances", "2",
                          out=out)
        try:
            wait_until(lambda: len(streams.admin().describe_group("testapp.double").members)
                       == 2, 30, "two members in the group")
            def owners() -> set[str]:
                return {p.owner for p in streams.admin().describe_group(
                    "testapp.double").partitions if p.stream == "items" and p.owner}

            # both instances own one of the two partitions
            wait_until(lambda: len(owners()) == 2, 30, "each instance to own a partition")
            wait_until(lambda: committed(streams, "testapp.double") >= N, 60, "all items")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        assert code == 0, out.read_text()
        assert set(doubled_ids(streams, "doubled")) == set(range(N))
