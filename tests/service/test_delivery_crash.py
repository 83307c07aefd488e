"""Delivery modes killed at named fault points around a rebalance and a replay, on the embedded
log (services in child processes, ``tests.support.delivery_apps``):

* transactional: a member whose partition is revoked commits, in that transaction, the offsets
  of every output it commits — killed right after the hand-over, no input comes out twice;
* checkpointed: a replayed record's offset on the retry stream is committed only with a
  checkpoint holding the state it produced — killed before that checkpoint, the replay is
  handled again and its effect on the state is not lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream._wellknown import METRICS, retry_stream
from millstream.codecs import ModelCodec
from millstream.faults import FAULT_EXIT_CODE
from millstream.operations import list_exceptions, replay
from millstream.runtime import MetricsRecord
from millstream.runtime._state import CheckpointStore
from millstream.streams._base import Streams
from tests.service.test_runtime import read_all
from tests.support.apps import Item
from tests.support.children import REPO
from tests.support.delivery_apps import app
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

# short leases so a killed member's partitions move on quickly, yet twice the 1.5 s first used:
# a live member whose heartbeats a loaded machine holds up for 1.5 s would lose its lease, and
# the rebalance that follows would not be the one the test stages
STREAMS_URL = "local:?session_timeout_ms=3000&heartbeat_interval_ms=500"


def start(service: str, out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), child_env.get("PYTHONPATH", "")) if p)
    child_env["MILLSTREAM_STREAMS"] = STREAMS_URL
    child_env.pop("MILLSTREAM_FAULT", None)
    child_env.update(env)
    with open(out, "ab") as stdout, open(out.with_suffix(".err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.support.delivery_apps:app",
             service, "--metrics-interval", "0.5"],
            cwd=REPO, env=child_env, stdout=stdout, stderr=stderr)


def seen(out: Path) -> list[int]:
    return [int(line.split()[1]) for line in out.read_text().splitlines()
            if line.startswith("seen ")]


def produce_items(streams: Streams, n: int) -> None:
    streams.admin().ensure_stream("items", app.streams["items"].partitions)
    codec = ModelCodec(Item)
    with streams.open_producer() as producer:
        for i in range(n):
            value, headers = codec.encode(Item(id=i, n=i))
            producer.send("items", value, key=str(i).encode(), headers=headers)


def committed(streams: Streams, group: str, stream: str = "items") -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == stream)


def final_state(streams: Streams, group: str) -> dict[str, int]:
    """Every partition's last checkpointed state, summed by bucket."""
    store = CheckpointStore(streams, group)
    store.refresh()
    state: dict[str, int] = {}
    for number in range(app.streams["items"].partitions):
        latest = store.latest(number)
        assert latest is not None
        for bucket, total in latest.state.items():
            state[bucket] = state.get(bucket, 0) + total
    return state


def stop(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    assert code == 0, out.with_suffix(".err").read_text()


@pytest.mark.parametrize("service,output", [("copy", "copies"), ("tally", "tallies")])
def test_transactional_revoke_commits_the_offsets_of_every_output_in_its_transaction(
        tmp_path: Path, service: str, output: str) -> None:
    n = 200
    group = f"delivery.{service}"
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams, n)
        # A commits only when a partition is revoked (its commit interval is a minute), and
        # dies right after handing the partition over
        a = start(service, tmp_path / "a.out", {
            "DELIVERY_DELAY_MS": "10", "DELIVERY_COMMIT_S": "60",
            "MILLSTREAM_FAULT": "log.group.after_release"})
        b = None
        try:
            wait_until(lambda: len(seen(tmp_path / "a.out")) >= 40 or a.poll() is not None,
                       60, "the first member to handle 40 items")
            assert a.poll() is None, (tmp_path / "a.err").read_text()
            b = start(service, tmp_path / "b.out", {})
            assert a.wait(60) == FAULT_EXIT_CODE, (tmp_path / "a.err").read_text()
            # what the revocation committed: outputs and offsets in one transaction
            outputs = streams.admin().describe_stream(output).records
            assert outputs == committed(streams, group) > 0
            wait_until(lambda: committed(streams, group) >= n or b.poll() is not None,
                       90, f"the second member to commit all {n} items")
        finally:
            if b is not None:
                stop(b, tmp_path / "b.out")
        # the items A handled on the partition it kept were there before the hand-over
        handled_by_a = set(seen(tmp_path / "a.out"))
        assert len(handled_by_a) >= 40
        ids = Counter(Item.model_validate_json(r.value or b"").id
                      for r in read_all(streams, output))
        assert set(ids) == set(range(n))
        assert [i for i, c in ids.items() if c > 1] == []
        assert sum(ids.values()) == n
        if service == "tally":  # the state went over with its partition, each item in it once
            assert final_state(streams, group) == {
                str(b): sum(i for i in range(n) if i % 5 == b) for b in range(5)}


def test_checkpointed_replay_offset_moves_only_with_the_checkpoint_of_its_state(
        tmp_path: Path) -> None:
    n = 50
    group = "delivery.count"
    retry = retry_stream(group)
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams, n)
        # 1. item 7 fails and goes to the exceptions stream; the stop checkpoints the rest
        first = start("count", tmp_path / "first.out", {"DELIVERY_FAIL_ID": "7"})
        try:
            wait_until(lambda: len(seen(tmp_path / "first.out")) >= n - 1
                       or first.poll() is not None, 60, "every other item to be applied")
        finally:
            stop(first, tmp_path / "first.out")
        assert committed(streams, group) == n
        # 2. the fixed service gets item 7 again through its retry stream
        failures = list_exceptions(streams, group=group)
        assert [(f.error_type, f.input["stream"]) for f in failures] == [
            ("builtins.ValueError", "items")]
        replay(streams, failures)
        # 3. it applies the replay, then is killed as its stop begins the checkpoint
        began_ms = int(time.time() * 1000)
        second = start("count", tmp_path / "second.out",
                       {"MILLSTREAM_FAULT": "service.checkpoint.before_write"})
        try:
            wait_until(lambda: seen(tmp_path / "second.out") == [7]
                       or second.poll() is not None, 60, "the replayed item to be applied")
            assert second.poll() is None, (tmp_path / "second.err").read_text()

            def metrics_after_the_replay() -> int:
                records = [MetricsRecord.parse(r.value) for r in read_all(streams, METRICS)
                           if r.key == group.encode() and r.value is not None]
                return sum(1 for m in records
                           if m.started_ms >= began_ms and m.totals.records_in >= 1)

            # two metrics records after it: at least one commit interval went by in between
            wait_until(lambda: metrics_after_the_replay() >= 2, 30, "two commit intervals")
            # no checkpoint holds the replay's state yet, so its offset must not be committed
            retry_committed = committed(streams, group, retry)
        finally:
            second.send_signal(signal.SIGTERM)
            code = second.wait(30)
        assert code == FAULT_EXIT_CODE, (tmp_path / "second.err").read_text()
        assert retry_committed == 0
        # 4. restarted, it handles the replay again and checkpoints it
        third = start("count", tmp_path / "third.out", {})
        try:
            wait_until(lambda: seen(tmp_path / "third.out") == [7] or third.poll() is not None,
                       60, "the replayed item to be applied again")
        finally:
            stop(third, tmp_path / "third.out")
        assert committed(streams, group, retry) == 1
        # every item applied once: item 7 by its replay
        assert final_state(streams, group) == {
            str(b): sum(i for i in range(n) if i % 5 == b) for b in range(5)}
