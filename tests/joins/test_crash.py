"""A join killed at named fault points (``MILLSTREAM_FAULT``) and restarted ends with the
output of a run never killed, exactly-once on the embedded log, killed just before and just
after a transaction commits:

* the shop's stream–table join: every order joined once with its item's title (the items are
  all written first, so the run never killed gives the reference model's join);
* the ads' interval join: every pair once (no record is late, so the run never killed gives
  the reference model's pairs, whatever order the two inputs are read in)."""

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
from millstream.streams._base import Streams
from tests.joins import reference
from tests.joins.apps import Event, Item, Line, Order, Pair
from tests.service.test_runtime import read_all
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

ORDERS = 600
ITEMS = 30
STREAMS_URL = "local:?session_timeout_ms=1500&heartbeat_interval_ms=300"
GROUP = "shop.titles"


def start(out: Path, fault: str | None = None,
          service: str = "titles") -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MILLSTREAM_STREAMS"] = STREAMS_URL
    env["MILLSTREAM_TEST_DELAY_MS"] = "2"
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(out, "ab") as stdout, open(out.with_suffix(".err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.joins.apps:app", service,
             "--metrics-interval", "0.5"],
            cwd=REPO, env=env, stdout=stdout, stderr=stderr)


def produce(streams: Streams) -> list[reference.Event]:
    """The items, then the orders (keyed by item); the input as the reference model sees it."""
    admin = streams.admin()
    admin.ensure_stream("items", 2)
    admin.ensure_stream("orders", 2)
    events = []
    with streams.open_producer() as producer:
        for i in range(ITEMS):
            value, headers = ModelCodec(Item).encode(Item(title=f"item {i}"))
            producer.send("items", value, key=f"k{i}".encode(), headers=headers)
            events.append(reference.Event(reference.RIGHT, f"k{i}", 0, i))
        for n in range(ORDERS):
            key = f"k{n % (ITEMS + 5)}"  # five keys without an item
            value, headers = ModelCodec(Order).encode(Order(id=n, item=key))
            producer.send("orders", value, key=key.encode(), headers=headers)
            events.append(reference.Event(reference.LEFT, key, 0, n))
    return events


def committed(streams: Streams, group: str = GROUP, inputs: tuple[str, ...] = ("orders",)
              ) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream in inputs)


def joined(streams: Streams) -> Counter[tuple[str, int, int | None]]:
    out: Counter[tuple[str, int, int | None]] = Counter()
    for record in read_all(streams, "lines"):
        line = Line.model_validate_json(record.value or b"")
        item = None if line.title is None else int(line.title.split()[1])
        out[(record.key or b"").decode(), line.order, item] += 1
    return out


@pytest.mark.parametrize("fault", [
    "service.transaction.before_commit:4",  # outputs and rows buffered, nothing committed
    "service.transaction.after_commit:4",   # committed, nothing after it done
])
def test_a_join_killed_at_a_transaction_ends_with_the_output_of_a_run_never_killed(
        tmp_path: Path, fault: str) -> None:
    with millstream.open_streams(STREAMS_URL) as streams:
        events = produce(streams)
        crashed = start(tmp_path / "crash.out", fault)
        code = crashed.wait(60)
        assert code == FAULT_EXIT_CODE, (tmp_path / "crash.err").read_text()
        assert 0 < committed(streams) < ORDERS  # killed mid-stream
        proc = start(tmp_path / "run.out")
        try:
            wait_until(lambda: committed(streams) >= ORDERS or proc.poll() is not None, 60,
                       "the join to commit every order")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (tmp_path / "run.err").read_text()
        expected = Counter(reference.table_join(events))
        assert joined(streams) == expected
        assert max(expected.values()) == 1


CLICKS = 300


def produce_clicks(streams: Streams) -> list[reference.Event]:
    """Ads shown and clicked, ten keys, times spread over 200 s out of order."""
    admin = streams.admin()
    events = []
    with streams.open_producer() as producer:
        for side, stream in ((reference.LEFT, "shown"), (reference.RIGHT, "clicked")):
            admin.ensure_stream(stream, 2)
            for n in range(CLICKS):
                ident = n if side == reference.LEFT else 10_000 + n
                at = (n * 7919) % 200_000  # ms, out of order
                key = f"u{n % 10}"
                value, headers = ModelCodec(Event).encode(Event(id=ident, at=at / 1000))
                producer.send(stream, value, key=key.encode(), headers=headers)
                events.append(reference.Event(side, key, at, ident))
    return events


@pytest.mark.parametrize("fault", [
    "service.transaction.before_commit:4",
    "service.transaction.after_commit:4",
])
def test_an_interval_join_killed_at_a_transaction_ends_with_every_pair_once(
        tmp_path: Path, fault: str) -> None:
    group, inputs = "shop.clicks", ("shown", "clicked")
    with millstream.open_streams(STREAMS_URL) as streams:
        events = produce_clicks(streams)
        crashed = start(tmp_path / "crash.out", fault, service="clicks")
        assert crashed.wait(60) == FAULT_EXIT_CODE, (tmp_path / "crash.err").read_text()
        assert 0 < committed(streams, group, inputs) < 2 * CLICKS  # killed mid-stream
        proc = start(tmp_path / "run.out", service="clicks")
        try:
            wait_until(lambda: committed(streams, group, inputs) >= 2 * CLICKS
                       or proc.poll() is not None, 60, "the join to commit every record")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (tmp_path / "run.err").read_text()
        got: Counter[tuple[str, int, int]] = Counter()
        for record in read_all(streams, "pairs"):
            joined = Pair.model_validate_json(record.value or b"")
            got[(record.key or b"").decode(), joined.shown, joined.clicked] += 1
        expected, late = reference.interval_join(events, lambda key: 0, within=5_000,
                                                 grace=10**9, lateness=0)
        assert late == []
        assert got == Counter(expected)
        assert len(expected) > 100 and max(got.values()) == 1
