"""Every fault point of the delivery modes, on the embedded log and on Kafka.

A service runs as ``millstream run`` in a child process, is killed (``os._exit``, as a
kill -9) at a named fault point, and restarted:

* at-least-once, at ``service.commit.after_flush`` (outputs durable, offsets not committed)
  and ``service.commit.after_commit``: nothing is lost, and the records that come out twice
  are exactly the outputs that were durable past the committed offsets when it died;
* checkpointed (stateful at-least-once), at ``service.checkpoint.before_write`` (outputs
  flushed, no checkpoint yet) and ``service.checkpoint.after_write`` (checkpoints durable,
  offsets not committed): the final state equals the fold of the whole input — the state is
  restored with the offsets it matches, so no record is counted twice.

The exactly-once points are killed in ``test_crash.py`` (embedded log),
``kafka/test_services.py`` and ``test_app_guarantee.py`` (both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import millstream
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime import CheckpointStore
from millstream.streams import Streams
from tests.support.children import REPO, run_until_then_stop
from tests.support.waiting import wait_until

N = 1_000
LOCAL = "local:?session_timeout_ms=1500&heartbeat_interval_ms=300"

MODULE = '''
import time
from pydantic import BaseModel
from millstream.service import App, Context

class Item(BaseModel):
    id: int
    n: int

class Total(BaseModel):
    id: int
    bucket: str
    total: int

app = App("crash{suffix}", partitions=2)

@app.service(inputs={{"items-{suffix}": Item}}, outputs={{"doubled-{suffix}": Item}},
             max_batch=50)
def double(item: Item) -> Item:
    time.sleep(0.001)
    return Item(id=item.id, n=item.n * 2)

@app.service(inputs={{"items-{suffix}": Item}}, outputs={{"totals-{suffix}": Total}},
             stateful=True, max_batch=20, checkpoint_records=100, checkpoint_interval=60.0)
def summer(item: Item, ctx: Context) -> Total:
    time.sleep(0.001)
    bucket = str(item.id % 5)
    ctx.state[bucket] = ctx.state.get(bucket, 0) + item.n
    return Total(id=item.id, bucket=bucket, total=ctx.state[bucket])
'''


class Scenario:
    """One app module of its own (unique stream and group names) and its input."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp, self.url = tmp_path, url
        self.suffix = uuid.uuid4().hex[:8]
        (tmp_path / f"crash_{self.suffix}.py").write_text(
            textwrap.dedent(MODULE.format(suffix=self.suffix)))
        self.log = tmp_path / "service.log"
        self.items = f"items-{self.suffix}"

    def stream(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def group(self, service: str) -> str:
        return f"crash{self.suffix}.{service}"

    def produce(self, streams: Streams) -> None:
        for name in ("items", "doubled", "totals"):
            streams.admin().create_stream(self.stream(name), 2)
        with streams.open_producer() as producer:
            for i in range(N):
                producer.send(self.items, f'{{"id":{i},"n":{i}}}'.encode(),
                              key=str(i).encode(),
                              headers=(("content-type", b"application/json"),))

    def start(self, service: str, fault: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.tmp), str(REPO),
                                             env.get("PYTHONPATH", "")])
        env["MILLSTREAM_STREAMS"] = self.url
        env.pop("MILLSTREAM_FAULT", None)
        if fault:
            env["MILLSTREAM_FAULT"] = fault
        with open(self.log, "ab") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "millstream", "run", f"crash_{self.suffix}:app",
                 service], cwd=self.tmp, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def crash(self, service: str, fault: str) -> None:
        proc = self.start(service, fault)
        assert proc.wait(120) == FAULT_EXIT_CODE, self.log.read_text()
        assert f"fault point {fault.split(':')[0]!r} reached" in self.log.read_text()

    def run_until(self, service: str, done: Callable[[], bool]) -> None:
        run_until_then_stop(lambda: self.start(service), self.log, done, 180,
                            f"{service} to finish")


def committed(streams: Streams, group: str, stream: str) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == stream)


def ids_in(streams: Streams, stream: str) -> Counter[int]:
    """Every record of ``stream`` (no transactions here: its offsets are dense), by id."""
    want = streams.admin().describe_stream(stream).records
    ids: Counter[int] = Counter()
    with streams.open_consumer() as reader:
        reader.subscribe([stream])

        def read() -> bool:
            ids.update(json.loads(r.value or b"")["id"]
                       for r in reader.poll(max_records=5000, timeout=0.2))
            return sum(ids.values()) >= want

        wait_until(read, 60, f"the {want} records of {stream}")
    return ids


def at_least_once(tmp_path: Path, url: str, fault: str) -> None:
    s = Scenario(tmp_path, url)
    with millstream.open_streams(url) as streams:
        s.produce(streams)
        s.crash("double", fault)
        before = committed(streams, s.group("double"), s.items)
        durable = streams.admin().describe_stream(s.stream("doubled")).records
        assert before < N
        s.run_until("double", lambda: committed(streams, s.group("double"), s.items) >= N)
        ids = ids_in(streams, s.stream("doubled"))
    assert set(ids) == set(range(N))  # nothing lost
    assert sum(ids.values()) - N == durable - before  # the duplicates: exactly those


def checkpointed(tmp_path: Path, url: str, fault: str) -> None:
    s = Scenario(tmp_path, url)
    with millstream.open_streams(url) as streams:
        s.produce(streams)
        s.crash("summer", fault)
        s.run_until("summer", lambda: set(ids_in(streams, s.stream("totals"))) ==
                    set(range(N)))
        store = CheckpointStore(streams, s.group("summer"))
        store.refresh()
        state: Counter[str] = Counter()
        for number in (0, 1):
            latest = store.latest(number)
            assert latest is not None
            state.update(latest.state)
        assert committed(streams, s.group("summer"), s.items) == N
    assert dict(state) == {str(b): sum(i for i in range(N) if i % 5 == b) for b in range(5)}


AT_LEAST_ONCE = ["service.commit.after_flush:3", "service.commit.after_commit:3"]
CHECKPOINTED = ["service.checkpoint.before_write:3", "service.checkpoint.after_write:3"]


@pytest.mark.multiprocess
@pytest.mark.parametrize("fault", AT_LEAST_ONCE)
def test_at_least_once_killed_at_a_commit_point_on_the_embedded_log_loses_nothing(
        tmp_path: Path, fault: str) -> None:
    at_least_once(tmp_path, LOCAL, fault)


@pytest.mark.parametrize("fault", AT_LEAST_ONCE)
def test_at_least_once_killed_at_a_commit_point_on_kafka_loses_nothing(
        tmp_path: Path, kafka_bootstrap: str, fault: str) -> None:
    at_least_once(tmp_path, f"kafka://{kafka_bootstrap}?session.timeout.ms=6000"
                            "&heartbeat.interval.ms=1000", fault)


@pytest.mark.multiprocess
@pytest.mark.parametrize("fault", CHECKPOINTED)
def test_stateful_killed_at_a_checkpoint_point_on_the_embedded_log_keeps_exact_state(
        tmp_path: Path, fault: str) -> None:
    checkpointed(tmp_path, LOCAL, fault)


@pytest.mark.parametrize("fault", CHECKPOINTED)
def test_stateful_killed_at_a_checkpoint_point_on_kafka_keeps_exact_state(
        tmp_path: Path, kafka_bootstrap: str, fault: str) -> None:
    checkpointed(tmp_path, f"kafka://{kafka_bootstrap}?session.timeout.ms=6000"
                           "&heartbeat.interval.ms=1000", fault)
