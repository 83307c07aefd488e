"""Async services SIGKILLed with ``concurrency`` records in flight, on the embedded log and on
Kafka (services in child processes, ``tests.support.async_apps``), killed through the fault
point ``service.concurrent.full`` (every slot held by a record awaiting in its handler):

* at-least-once: at the kill, exactly N records had begun and not finished, and the committed
  offset of each partition is at or below the lowest of them there — while records after it
  had finished; every input below a committed offset has its output. Restarted, every input
  has its output (at least once) and each key's outputs first appear in input order;
* exactly-once: at the kill, the committed outputs are exactly those of the inputs below the
  committed offsets, once each; restarted, every input's output is there exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import millstream
from millstream.codecs import ModelCodec
from millstream.faults import FAULT_EXIT_CODE
from millstream.streams._base import Streams
from tests.support.apps import Item
from tests.support.children import REPO, run_until_then_stop

pytestmark = pytest.mark.multiprocess

M = 400  # items, on 40 keys over 2 partitions
N = 16  # records in flight
KEYS = 40
#: the fault's visit: one each time the slots fill up again (records that finish together are
#: replaced together), so the 10th comes ~10 × 20 ms in — a few commit intervals (50 ms) — with
#: N in flight
FAULT = "service.concurrent.full:10"
BACKENDS = ["local", pytest.param("kafka", marks=pytest.mark.kafka)]


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "local":  # short leases so a killed member's partitions move on quickly
        return "local:?session_timeout_ms=1500&heartbeat_interval_ms=300"
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{bootstrap}?session.timeout.ms=6000&heartbeat.interval.ms=1000"


def start(url: str, service: str, suffix: str, out: Path,
          fault: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MILLSTREAM_STREAMS"] = url
    env["ASYNC_SUFFIX"] = suffix
    env["ASYNC_CONCURRENCY"] = str(N)
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(out, "ab") as stdout, open(out.with_suffix(".err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.support.async_apps:app",
             service, "--metrics-interval", "0.5"],
            cwd=REPO, env=env, stdout=stdout, stderr=stderr)


def produce(streams: Streams, stream: str) -> dict[tuple[int, int], int]:
    """M items keyed k0..k39; returns (partition, offset) -> id."""
    streams.admin().ensure_stream(stream, 2)
    codec = ModelCodec(Item)
    where: dict[tuple[int, int], int] = {}
    with streams.open_producer() as producer:
        handles = []
        for i in range(M):
            value, headers = codec.encode(Item(id=i, n=i))
            handles.append((i, producer.send(stream, value, key=f"k{i % KEYS}".encode(),
                                             headers=headers)))
        producer.flush()
        for i, handle in handles:
            position = handle.wait(30)
            where[position.partition, position.offset] = i
    return where


def lines(out: Path, what: str) -> set[tuple[int, int]]:
    """(partition, offset) of the ``what`` lines (start or end) the child printed whole."""
    found = set()
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == what:
            found.add((int(parts[1]), int(parts[2])))
    return found


def committed(streams: Streams, group: str, stream: str) -> dict[int, int]:
    info = streams.admin().describe_group(group)
    got = {p.partition: p.committed or 0 for p in info.partitions if p.stream == stream}
    return {p: got.get(p, 0) for p in (0, 1)}


def read_outputs(streams: Streams, stream: str, want: int) -> list[tuple[bytes, int]]:
    """(key, id) of the committed records of ``stream``, in order per partition: read until
    ``want`` came, then a second more (a duplicate would come after)."""
    out: list[tuple[bytes, int]] = []
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            for r in reader.poll(max_records=1000, timeout=0.2):
                out.append((r.key or b"", Item.model_validate_json(r.value or b"").id))
            if len(out) >= want and quiet_until is None:
                quiet_until = time.monotonic() + 1.0
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    return out


def kill_with_n_in_flight(streams: Streams, url: str, service: str, suffix: str,
                          out: Path, items: str, group: str,
                          where: dict[tuple[int, int], int]) -> dict[int, int]:
    """Run ``service`` until the fault kills it with N in flight; check what was committed
    against what had finished; return the committed offsets."""
    proc = start(url, service, suffix, out, FAULT)
    assert proc.wait(120) == FAULT_EXIT_CODE, out.with_suffix(".err").read_text()
    unfinished = lines(out, "start") - lines(out, "end")
    assert len(unfinished) == N, sorted(unfinished)
    at_kill = committed(streams, group, items)
    assert sum(at_kill.values()) > 0, "no commit before the kill: raise the fault's visit"
    finished_above = 0
    for p in (0, 1):
        lowest = min((off for q, off in unfinished if q == p), default=None)
        if lowest is not None:  # never past a record that had not finished
            assert at_kill[p] <= lowest, (p, at_kill[p], lowest)
        finished_above += sum(1 for q, off in lines(out, "end") if q == p and off >= at_kill[p])
    assert finished_above > 0  # records after the committed offset had finished: held back
    return at_kill


def below(where: dict[tuple[int, int], int], offsets: dict[int, int]) -> list[int]:
    return sorted(i for (p, off), i in where.items() if off < offsets[p])


def finish(streams: Streams, url: str, service: str, suffix: str, out: Path, items: str,
           group: str) -> None:
    """Restart ``service`` without a fault until its group committed every item, then stop it
    cleanly."""
    run_until_then_stop(lambda: start(url, service, suffix, out), out.with_suffix(".err"),
                        lambda: sum(committed(streams, group, items).values()) >= M, 120,
                        f"{group} to commit all {M} items")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kill_with_n_records_in_flight_loses_nothing_and_commits_below_the_unfinished(
        request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    url = backend_url(request, backend)
    suffix = uuid.uuid4().hex[:8]
    items, fetched, group = f"items-{suffix}", f"fetched-{suffix}", f"async{suffix}.fetch"
    with millstream.open_streams(url) as streams:
        where = produce(streams, items)
        at_kill = kill_with_n_in_flight(streams, url, "fetch", suffix, tmp_path / "a.out",
                                        items, group, where)
        # what was committed had its output flushed first
        before = {i for _, i in read_outputs(streams, fetched, len(below(where, at_kill)))}
        assert set(below(where, at_kill)) <= before
        finish(streams, url, "fetch", suffix, tmp_path / "b.out", items, group)
        outputs = read_outputs(streams, fetched, M)
    assert {i for _, i in outputs} == set(range(M))  # none lost (some twice: at least once)
    first_seen: dict[bytes, list[int]] = defaultdict(list)
    for key, i in outputs:
        if i not in first_seen[key]:
            first_seen[key].append(i)
    assert first_seen == {f"k{k}".encode(): list(range(k, M, KEYS)) for k in range(KEYS)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_exactly_once_with_n_records_in_flight_commits_each_output_once(
        request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    url = backend_url(request, backend)
    suffix = uuid.uuid4().hex[:8]
    items, exact, group = f"items-{suffix}", f"exact-{suffix}", f"async{suffix}.exact"
    with millstream.open_streams(url) as streams:
        where = produce(streams, items)
        at_kill = kill_with_n_in_flight(streams, url, "exact", suffix, tmp_path / "a.out",
                                        items, group, where)
        # the committed transactions hold exactly the outputs of the offsets they committed
        committed_outputs = Counter(i for _, i in read_outputs(
            streams, exact, len(below(where, at_kill))))
        assert committed_outputs == Counter(below(where, at_kill))
        finish(streams, url, "exact", suffix, tmp_path / "b.out", items, group)
        outputs = Counter(i for _, i in read_outputs(streams, exact, M))
    assert outputs == Counter(range(M))  # each input's output exactly once
