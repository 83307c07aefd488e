"""Services killed at named fault points (``MILLSTREAM_FAULT``) and restarted.

* at-least-once: killed after its outputs were flushed but before the input offsets were
  committed — nothing is lost, and the re-processed records show up as duplicates;
* exactly-once: killed just before the transaction commits, and inside the SQLite
  transaction itself — nothing is lost and nothing is duplicated;
* stateful: killed mid-stream — the final state equals the fold of the whole input, and the
  records re-read after the restart are at most one checkpoint interval (plus one batch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream.codecs import ModelCodec
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime._state import CheckpointStore
from millstream.streams._base import Streams
from tests.service.test_runtime import read_all
from tests.support.apps import Doubled, Item, app
from tests.support.children import REPO, run_until_then_stop
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

N = 1_000
# short leases so a killed member's partitions move on quickly
STREAMS_URL = "local:?session_timeout_ms=1500&heartbeat_interval_ms=300"


def start(service: str, out: Path, fault: str | None = None,
          extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MILLSTREAM_STREAMS"] = STREAMS_URL
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    env.update(extra_env or {})
    with open(out, "ab") as stdout, open(out.with_suffix(".err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.support.apps:app", service,
             "--metrics-interval", "0.5"],
            cwd=REPO, env=env, stdout=stdout, stderr=stderr)


def produce_items(streams: Streams, n: int = N, first: int = 0) -> None:
    """Items ``first`` .. ``n - 1``."""
    streams.admin().ensure_stream("items", app.streams["items"].partitions)
    codec = ModelCodec(Item)
    with streams.open_producer() as producer:
        for i in range(first, n):
            value, headers = codec.encode(Item(id=i, n=i))
            producer.send("items", value, key=str(i).encode(), headers=headers)


def committed(streams: Streams, group: str) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == "items")


def run_to_end(streams: Streams, service: str, group: str, out: Path,
               extra_env: dict[str, str] | None = None) -> None:
    """Run the service until its group committed every item, then stop it with SIGTERM."""
    run_until_then_stop(lambda: start(service, out, extra_env=extra_env),
                        out.with_suffix(".err"), lambda: committed(streams, group) >= N, 60,
                        f"{group} to commit all {N} items", stop_timeout=30)


def crash(service: str, fault: str, out: Path, extra_env: dict[str, str] | None = None) -> None:
    proc = start(service, out, fault=fault, extra_env=extra_env)
    code = proc.wait(60)
    assert code == FAULT_EXIT_CODE, (code, out.with_suffix(".err").read_text())


def doubled_ids(streams: Streams, stream: str) -> Counter[int]:
    return Counter(Doubled.model_validate_json(r.value or b"").id for r in read_all(streams,
                                                                                      stream))


def test_at_least_once_kill_after_flush_before_commit_loses_nothing(tmp_path: Path) -> None:
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        crash("double", "service.commit.after_flush:3", tmp_path / "crash.out",
              extra_env={"MILLSTREAM_TEST_DELAY_MS": "1"})
        before = committed(streams, "testapp.double")
        outputs_before = streams.admin().describe_stream("doubled").records
        assert outputs_before > before  # outputs flushed past the committed offsets
        run_to_end(streams, "double", "testapp.double", tmp_path / "run.out")
        ids = doubled_ids(streams, "doubled")
        assert set(ids) == set(range(N))  # nothing lost
        duplicates = sum(ids.values()) - N
        assert duplicates == outputs_before - before  # exactly the uncommitted ones, again


@pytest.mark.parametrize("fault", [
    "service.transaction.before_commit:3",   # outputs buffered, transaction not started
    "log.commit_offsets.before_commit:3",    # inside the SQLite transaction, before COMMIT
    "service.transaction.after_commit:3",    # committed, nothing after it done
])
def test_exactly_once_kill_during_the_transaction_no_loss_no_duplicate(
        tmp_path: Path, fault: str) -> None:
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        crash("double_eos", fault, tmp_path / "crash.out",
              extra_env={"MILLSTREAM_TEST_DELAY_MS": "2"})
        part = streams.admin().describe_stream("doubled-eos").records
        assert 0 < committed(streams, "testapp.double_eos") < N
        assert part == committed(streams, "testapp.double_eos")  # outputs match offsets
        run_to_end(streams, "double_eos", "testapp.double_eos", tmp_path / "run.out")
        ids = doubled_ids(streams, "doubled-eos")
        assert set(ids) == set(range(N))
        assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:10]
        assert sum(ids.values()) == N


def test_stateful_kill_mid_stream_restores_state_and_rereads_at_most_one_interval(
        tmp_path: Path) -> None:
    env = {"MILLSTREAM_TEST_TRACE": "1"}
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        # 17 batches of ≤20 records in: past several checkpoints (every 100 records)
        crash("summer", "service.batch.after_send:17", tmp_path / "crash.out", extra_env=env)
        first = [int(line.split()[1]) for line in (tmp_path / "crash.out").read_text()
                 .splitlines() if line.startswith("seen ")]
        assert len(first) >= 17 * 10
        run_to_end(streams, "summer", "testapp.summer", tmp_path / "run.out", extra_env=env)
        second = [int(line.split()[1]) for line in (tmp_path / "run.out").read_text()
                  .splitlines() if line.startswith("seen ")]
        assert set(first) | set(second) == set(range(N))
        reread = len(set(first) & set(second))
        interval = app.services["summer"].checkpoint_records
        batch = app.services["summer"].max_batch
        assert reread <= interval + batch, (reread, interval, batch)

        store = CheckpointStore(streams, "testapp.summer")
        store.refresh()
        state: dict[str, int] = {}
        for number in range(app.streams["items"].partitions):
            latest = store.latest(number)
            assert latest is not None
            for bucket, total in latest.state.items():
                state[bucket] = state.get(bucket, 0) + total
        expected: dict[str, int] = {}
        for i in range(N):  # the run that was never killed: a plain fold over the input
            expected[str(i % 5)] = expected.get(str(i % 5), 0) + i
        assert state == expected


def test_stateful_state_moves_with_its_partition_when_a_second_instance_joins(
        tmp_path: Path) -> None:
    # no member dies here, so nothing waits for a lease to run out: a long session, so that
    # a heartbeat thread a loaded machine holds up for 1.5 s does not expire a live member
    # (its partition would move without the checkpoint at revocation)
    env = {"MILLSTREAM_TEST_TRACE": "1", "MILLSTREAM_TEST_DELAY_MS": "3",
           "MILLSTREAM_STREAMS": "local:?session_timeout_ms=30000&heartbeat_interval_ms=300"}
    with millstream.open_streams(STREAMS_URL) as streams:
        # half the items first; the rest once the second instance holds a partition, so that
        # it has work however long it took to start (with every item sent at once, a first
        # instance left alone 2.4 s on a loaded machine had handled them all)
        produce_items(streams, N // 2)
        first = start("summer", tmp_path / "a.out", extra_env=env)
        second = None
        try:
            wait_until(lambda: len((tmp_path / "a.out").read_text().splitlines()) >= 200, 60,
                       "the first instance to get going")
            second = start("summer", tmp_path / "b.out", extra_env=env)

            def both_hold_a_partition() -> bool:
                members = streams.admin().describe_group("testapp.summer").members
                return len(members) == 2 and all(m.partitions for m in members)

            wait_until(both_hold_a_partition, 60, "the second instance to take a partition")
            produce_items(streams, N, first=N // 2)
            wait_until(lambda: len((tmp_path / "b.out").read_text().splitlines()) >= 50, 60,
                       "the second instance to handle records of its partition")

            def applied() -> int:
                return sum(line.startswith("seen ") for out in ("a.out", "b.out")
                           for line in (tmp_path / out).read_text().splitlines())

            # (a stateful service commits with its checkpoints: the stop writes the last ones)
            wait_until(lambda: applied() >= N, 90, "every item to be applied")
        finally:
            for proc in (first, second):
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
            codes = [p.wait(30) for p in (first, second) if p is not None]
        assert codes == [0, 0], (tmp_path / "a.err").read_text()
        assert committed(streams, "testapp.summer") == N
        seen_a = [line for line in (tmp_path / "a.out").read_text().splitlines()
                  if line.startswith("seen ")]
        seen_b = [line for line in (tmp_path / "b.out").read_text().splitlines()
                  if line.startswith("seen ")]
        # handed over cleanly: the checkpoint at revocation means nothing is applied twice
        assert len(seen_a) + len(seen_b) == N
        assert {int(x.split()[1]) for x in seen_a + seen_b} == set(range(N))
        store = CheckpointStore(streams, "testapp.summer")
        store.refresh()
        state: dict[str, int] = {}
        for number in range(app.streams["items"].partitions):
            latest = store.latest(number)
            assert latest is not None
            for bucket, total in latest.state.items():
                state[bucket] = state.get(bucket, 0) + total
        assert state == {str(b): sum(i for i in range(N) if i % 5 == b) for b in range(5)}
