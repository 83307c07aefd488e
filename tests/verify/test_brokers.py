"""The broker-kill schedule of ``millstream verify --kill-brokers``: one node down at a time.

The nodes here are real processes standing in for brokers, laid out as the test cluster's
harness lays them out (``state.json`` with their pids, ``node-N/server.properties`` on their
command line, ``node-N/server.log``); each logs that it serves 1.5 s after it starts, as a
broker does after recovering its log. The schedule is asked to kill as often as it can."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from millstream._verify.brokers import STARTED, TestCluster
from millstream._verify.runner import _Brokers

#: What a stand-in node runs: serve after a pause, then live until killed.
NODE = ("import pathlib, sys, time; time.sleep(1.5); "
        "pathlib.Path('server.log').open('ab').write(b'" + STARTED.decode() + "\\n'); "
        "time.sleep(600)")


def start_nodes(base: Path, n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(1, n + 1):
        node = base / f"node-{i}"
        node.mkdir()
        (node / "server.properties").write_text(f"node.id={i}\n")
        proc = subprocess.Popen([sys.executable, "-c", NODE, str(node / "server.properties")],
                                cwd=node, start_new_session=True)
        procs.append(proc)
    # as the harness does before it records 'ready': each node runs its own command line (for
    # a moment after a spawn, /proc shows the child's command line empty)
    for proc, i in zip(procs, range(1, n + 1), strict=True):
        marker = str(base / f"node-{i}" / "server.properties").encode()
        deadline = time.monotonic() + 30
        while marker not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None, f"node {i} did not start"
            time.sleep(0.01)
    (base / "state.json").write_text(json.dumps(
        {"status": "ready", "bootstrap": "127.0.0.1:1", "pids": [p.pid for p in procs]}))
    return procs


def test_the_next_broker_kill_waits_until_the_restarted_node_serves(tmp_path: Path) -> None:
    first = start_nodes(tmp_path, 3)
    cluster = TestCluster(tmp_path)
    brokers = _Brokers(cluster, random.Random(3), every=0.01)  # wants a kill at every step
    t0 = time.monotonic()
    # per kill: which node, whether the others ran, whether the node killed before it (then
    # restarted) had logged since its restart that it serves
    kills: list[tuple[int, list[bool], bool | None]] = []
    try:
        while time.monotonic() - t0 < 60 and len(kills) < 3:  # ~5 s, more on a loaded machine
            before = brokers.kills
            previous = kills[-1][0] if kills else None
            served = cluster.started(previous) if previous is not None else None
            brokers.step(time.monotonic() - t0)
            if brokers.kills > before:
                down = brokers.down
                assert down is not None
                kills.append((down, [cluster.running(i) for i in range(3) if i != down],
                              served))
            time.sleep(0.05)
        assert len(kills) == 3, kills
        assert [others for _, others, _ in kills] == [[True, True]] * 3
        assert [served for _, _, served in kills] == [None, True, True]
    finally:
        for i in range(3):  # by the pids in state.json, as the harness stops a cluster
            if cluster.running(i):
                cluster.kill(i)
        for proc in first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
