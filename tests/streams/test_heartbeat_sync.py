"""A group member's heartbeats are not fsynced: a lease is worth nothing after an OS crash
(every member is gone with it), so renewing it costs no disk flush — an idle member's process
syncs nothing while its heartbeats run. A child process runs with the fsync-logging shim
(tests/support/syncspy.c) and counts the syncs made while it is idle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.platform_fixtures import require_services

SHIM = Path(__file__).resolve().parents[1] / "support" / "syncspy.c"
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time, millstream
url, log = sys.argv[1], sys.argv[2]
with millstream.open_streams(url) as streams:
    streams.admin().ensure_stream("quiet", 2)
    with streams.open_consumer(group="idle") as consumer:
        consumer.subscribe(["quiet"])
        consumer.poll(timeout=0.3)
        def syncs():
            try:
                return len(open(log).read().splitlines())
            except FileNotFoundError:
                return 0
        before = syncs()
        consumer.poll(timeout=2.0)  # 40 heartbeats at 50 ms
        print(syncs() - before)
"""


def test_an_idle_group_members_heartbeats_sync_nothing(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if require_services():
            pytest.fail("no C compiler (cc/gcc) to build the fsync shim; install gcc")
        pytest.skip("no C compiler (cc/gcc) to build the fsync shim")
    shim = tmp_path / "syncspy.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(shim), str(SHIM), "-ldl"],
                   check=True)
    log = tmp_path / "syncs.txt"
    env = {**os.environ, "LD_PRELOAD": str(shim), "SYNCSPY_LOG": str(log),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, f"local:{tmp_path / 'log'}?heartbeat_interval_ms=50",
         str(log)], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert int(done.stdout) == 0  # with fsynced heartbeats: one per heartbeat, about 40
