"""``millstream verify`` run for real, as a user runs it (a subprocess), on the embedded log,
on one Kafka node, and on three Kafka nodes with brokers SIGKILLed too (V1 in
/work/shared/notes/reliability.md). Each run is short (``VERIFY_SECONDS``); ``make
reliability`` runs the long ones. Besides exit 0, the JSON outcome must account for every
send exactly, agree with the raw history files, and the scratch stream must be gone."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import millstream
from millstream._verify.history import Ack, Send, read_history
from tests.support.kafka_cluster import KafkaCluster
from tests.support.logread import db_path
from tests.support.waiting import wait_until

VERIFY_SECONDS = float(os.environ.get("MILLSTREAM_VERIFY_SECONDS", "10"))
#: a run, stopping its workers, restarting brokers and the final read; plus a cluster's start
RUN_TIMEOUT_S = VERIFY_SECONDS + 240

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(RUN_TIMEOUT_S + 200)]


Done = subprocess.CompletedProcess[str]


KILL_EVERY_S = 1.5


def seed_with_an_early_kill() -> int:
    """A random seed whose first process kill comes in the first half of the run. verify
    draws its schedule from ``random.Random(seed)``, the first process kill first when no
    broker is killed; with a kill every 1.5 s on average, a 10 s run has none 0.13 % of the
    time (seen once in CI), and then the accounting of restarts is not tested."""
    while True:
        seed = random.randrange(2**31)
        if random.Random(seed).expovariate(1 / KILL_EVERY_S) < VERIFY_SECONDS / 2:
            return seed


def verify(tmp_path: Path, *args: str) -> tuple[Done, dict[str, Any]]:
    out = tmp_path / "outcome.json"
    if "--seed" not in args and "--kill-brokers" not in args:
        args = (*args, "--seed", str(seed_with_an_early_kill()))
    done = subprocess.run(
        [sys.executable, "-m", "millstream", "verify", "--seconds", str(VERIFY_SECONDS),
         "--producers", "2", "--consumers", "2", "--partitions", "4",
         "--kill-every", str(KILL_EVERY_S),
         "--history", str(tmp_path / "history"), "--json", str(out), *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    outcome = json.loads(out.read_text()) if out.exists() else {}
    return done, outcome


def assert_exact_accounting(outcome: dict[str, Any], history: Path) -> None:
    v = outcome["verdict"]
    assert outcome["passed"] is True
    for name in ("lost", "duplicated", "conflicting", "read_twice", "unexpected", "backwards",
                 "rewound", "skipped", "undelivered", "incomplete"):
        assert v[name] == {"count": 0, "examples": []}, name
    assert v["acknowledged"] > 0
    assert outcome["worker_exits"] == []  # no worker ended by itself
    assert v["delivered"] == v["stored"] > 0  # the group drained: it polled every record
    assert v["stored_acknowledged"] == v["acknowledged"]  # every acked value, once
    assert v["stored"] == v["stored_values"]  # no value twice
    assert v["stored_values"] == (v["stored_acknowledged"] + v["stored_indeterminate"]
                                  + v["stored_failed"])
    assert v["attempted"] == v["acknowledged"] + v["failed"] + v["indeterminate"]
    # the report agrees with the raw histories the processes wrote
    histories = [read_history(p) for p in sorted(history.glob("*.jsonl"))]
    sends = [e for h in histories for e in h.events if isinstance(e, Send)]
    acks = [e for h in histories for e in h.events if isinstance(e, Ack)]
    assert len(sends) == len({e.value for e in sends}) == v["attempted"]
    assert len(acks) == v["acknowledged"]
    # every start of a worker left its stderr file: a restart per kill or exit, no more
    restarts = [p for p in history.glob("*.err") if not p.stem.endswith(".0")]
    assert sum(outcome["process_kills"].values()) >= 1
    assert len(restarts) == sum(outcome["process_kills"].values()) + len(outcome["worker_exits"])


def scratch_streams(url: str | None = None) -> list[str]:
    with millstream.open_streams(url) as streams:
        return [s for s in streams.admin().list_streams() if s.startswith("verify-")]


def no_scratch_stream_left(url: str) -> None:
    """On several Kafka brokers a deletion reaches each in turn: wait for it, boundedly."""
    wait_until(lambda: scratch_streams(url) == [], 30, "the scratch stream to be deleted")


def test_verify_passes_on_the_embedded_log_and_accounts_for_every_send(tmp_path: Path) -> None:
    done, outcome = verify(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact_accounting(outcome, tmp_path / "history")
    assert "PASS: nothing acknowledged was lost" in done.stdout
    assert f"stream {outcome['stream']}: ran " in done.stdout
    assert scratch_streams() == []


def test_ctrl_c_stops_the_run_and_still_deletes_the_scratch_stream(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "millstream", "verify", "--seconds", "120",
         "--history", str(tmp_path / "history")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "history").glob("producer-*.jsonl")) or not scratch_streams():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert re.search(r"interrupted; the scratch stream verify-\S+ was deleted", err), err
    assert scratch_streams() == []
    assert _running_with(str(tmp_path / "history")) == []  # no worker outlived the run


def _running_with(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            out.append(line)
    return out


def _workers_of(history: Path) -> list[int]:
    """Pids of the live worker processes writing into ``history``."""
    return [pid for pid in _pids() if _runs(pid, str(history), "millstream._verify.workers")]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _runs(pid: int, *texts: str) -> bool:
    """True if ``pid`` is alive (not a zombie) and its command line holds every text."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return False
    return all(t in line for t in texts)


def start_long_run(tmp_path: Path, url: str | None = None,
                   ) -> tuple[subprocess.Popen[str], list[int]]:
    """A 120 s verify run (on the embedded log unless ``url``), once its workers write; with
    their pids."""
    history = tmp_path / "history"
    proc = subprocess.Popen(
        [sys.executable, "-m", "millstream", "verify", "--seconds", "120", "--kill-every", "0",
         "--history", str(history), *(["--streams", url] if url else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (len(list(history.glob("*.jsonl"))) < 6 or not scratch_streams(url)
           or len(_workers_of(history)) < 6):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)
    # 3 producers, 3 consumers; a worker whose write outwaited the log's busy timeout on a
    # loaded machine ended, and the runner starts its slot again within a second or so
    deadline = time.monotonic() + 30
    while len(pids := _workers_of(history)) != 6:
        assert time.monotonic() < deadline and proc.poll() is None, pids
        time.sleep(0.2)
    return proc, pids


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_stops_the_run_like_ctrl_c_and_no_worker_outlives_it(
        tmp_path: Path, signum: int) -> None:
    proc, pids = start_long_run(tmp_path)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert re.search(r"interrupted; the scratch stream verify-\S+ was deleted", err), err
    assert [pid for pid in pids if _runs(pid, "millstream._verify.workers")] == []
    assert scratch_streams() == []


def test_ctrl_c_pressed_again_during_the_clean_up_does_not_cut_it_short(
        tmp_path: Path) -> None:
    proc, pids = start_long_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    for _ in range(10):  # a burst 2 ms apart: these land in the clean-up
        time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert re.search(r"interrupted; the scratch stream verify-\S+ was deleted", err), err
    assert "Traceback" not in err
    assert [pid for pid in pids if _runs(pid, "millstream._verify.workers")] == []
    assert scratch_streams() == []


def test_an_interrupted_run_that_cannot_delete_the_stream_says_so(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}?busy_timeout_ms=1000"
    proc, pids = start_long_run(tmp_path, url)
    lock = sqlite3.connect(db_path(url), isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # every write waits, the stream's deletion too
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        lock.close()
    assert proc.returncode == 130, out + err
    left = scratch_streams(url)
    assert len(left) == 1
    assert (f"the scratch stream {left[0]} could NOT be deleted; delete it with: millstream "
            f"streams delete {left[0]}") in " ".join(err.split())
    assert "was deleted" not in err
    assert [pid for pid in pids if _runs(pid, "millstream._verify.workers")] == []


def test_workers_stop_by_themselves_when_the_runner_is_sigkilled(tmp_path: Path) -> None:
    proc, pids = start_long_run(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    try:
        wait_until(lambda: [p for p in pids if _runs(p, "millstream._verify.workers")] == [],
                   10, "every worker to end with the runner")
    finally:
        for pid in pids:  # leave nothing behind, even when the test fails
            if _runs(pid, "millstream._verify.workers"):
                os.kill(pid, signal.SIGKILL)
        with millstream.open_streams() as streams:
            for name in scratch_streams():
                streams.admin().delete_stream(name)


def test_a_run_that_cannot_reach_the_deployment_leaves_no_temporary_directory(
        tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the embedded log wants a directory")
    done = subprocess.run(
        [sys.executable, "-m", "millstream", "verify", "--seconds", "2",
         "--streams", f"local://{blocked}/log"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TMPDIR": str(temp)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert list(temp.iterdir()) == []
    assert "histories so far" not in done.stderr


def test_kill_brokers_without_a_cluster_dir_is_refused(tmp_path: Path) -> None:
    done, _ = verify(tmp_path, "--kill-brokers")
    assert done.returncode == 2
    assert "--kill-brokers needs --cluster-dir DIR" in done.stderr
    assert "never kills a broker it was not pointed at" in " ".join(done.stderr.split())
    assert scratch_streams() == []


def test_a_history_directory_holding_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "reader.jsonl").write_text("")
    done, _ = verify(tmp_path)
    assert done.returncode == 2
    assert f"{tmp_path / 'history'} is not empty; give a new or empty directory" in " ".join(
        done.stderr.split())
    assert scratch_streams() == []


def test_a_cluster_dir_without_state_is_refused_naming_it(tmp_path: Path) -> None:
    done, _ = verify(tmp_path, "--kill-brokers", "--cluster-dir", str(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path}/state.json does not exist" in done.stderr


def test_verify_passes_on_one_kafka_node(kafka_bootstrap: str, tmp_path: Path) -> None:
    url = f"kafka://{kafka_bootstrap}"
    done, outcome = verify(tmp_path, "--streams", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact_accounting(outcome, tmp_path / "history")
    assert scratch_streams(url) == []


@pytest.mark.kafka_cluster
def test_verify_passes_on_three_kafka_nodes_with_a_broker_killed(
        kafka_cluster3: KafkaCluster, tmp_path: Path) -> None:
    url = f"kafka://{kafka_cluster3.bootstrap}"
    # seed 6: the first broker kill comes 3.2 s into the run (the schedule's first draw), after
    # the first acknowledgements; writes then wait for the dead follower to leave the ISR
    done, outcome = verify(tmp_path, "--kill-brokers", "--cluster-dir",
                           str(kafka_cluster3.base_dir), "--broker-every", "2", "--seed", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact_accounting(outcome, tmp_path / "history")
    assert outcome["broker_kills"] >= 1
    assert "brokers SIGKILLed and restarted" in done.stdout
    # every node runs again, under the pid verify recorded for the harness
    kafka_cluster3.refresh()
    assert all(node.running() for node in kafka_cluster3.nodes)
    kafka_cluster3.wait_ready(120)
    no_scratch_stream_left(url)


def test_a_kept_history_reanalysed_passes_and_fails_once_a_record_is_taken_away(
        tmp_path: Path) -> None:
    """The whole way from histories to exit code: ``--analyse DIR`` gives the run's verdict
    again; with one acknowledged record taken out of the final read and another value stored
    a second time, it exits 3 and names both."""
    done, _ = verify(tmp_path, "--seconds", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    history = tmp_path / "history"
    again = subprocess.run([sys.executable, "-m", "millstream", "verify", "--analyse",
                            str(history)], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[1:] == done.stdout.splitlines()[1:]

    reader = history / "reader.jsonl"
    lines = [json.loads(line) for line in reader.read_text().splitlines()]
    acked = {(e.partition, e.offset): e.value
             for p in history.glob("producer-*.jsonl")
             for e in read_history(p).events if isinstance(e, Ack)}
    first = next(r for r in lines[0]["rs"] if (r[0], r[1]) in acked)
    lines[0]["rs"].remove(first)
    twice = lines[-1]["rs"][-1]
    lines.append({"op": "read", "rs": [[twice[0], 10**9, twice[2]]]})
    reader.write_text("".join(json.dumps(line) + "\n" for line in lines))

    failed = subprocess.run([sys.executable, "-m", "millstream", "verify", "--analyse",
                             str(history)], capture_output=True, text=True, check=False)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    out = failed.stdout.splitlines()
    i = out.index("lost (acknowledged or polled, then absent): 1")
    assert out[i + 1] == (f"  e.g. {first[2]!r} acknowledged to {first[2].split(':')[0]} at "
                          f"{first[0]}@{first[1]}, absent from the final read")
    i = out.index("stored twice (one value at two positions): 1")
    assert out[i + 1].startswith(f"  e.g. {twice[2]!r} stored at ")
    assert out[i + 1].endswith(f"{twice[0]}@{twice[1]}, {twice[0]}@{10**9}")
    assert "one offset, two values: 0" in out
    assert out[-1] == f"FAIL: histories kept in {history}"
