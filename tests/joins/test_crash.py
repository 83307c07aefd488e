"""A join killed at named fault points (``MILLSTREAM_FAULT``) and restarted ends with the
output of a run never killed: the shop's stream–table join, exactly-once on the embedded log,
killed just before and just after a transaction commits — every order joined once, with
its item's title (the items are all written first, so the run never killed is the
reference model's join of the whole input)."""

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
from tests.joins.apps import Item, Line, Order
from tests.service.test_runtime import read_all
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

ORDERS = 600
ITEMS = 30
STREAMS_URL = "local:?session_timeout_ms=1500&heartbeat_interval_ms=300"
GROUP = "shop.titles"


def start(out: Path, fault: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["MILLSTREAM_STREAMS"] = STREAMS_URL
    env["MILLSTREAM_TEST_DELAY_MS"] = "2"
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(out, "ab") as stdout, open(out.with_suffix(".err"), "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.joins.apps:app", "titles",
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


def committed(streams: Streams) -> int:
    info = streams.admin().describe_group(GROUP)
    return sum(p.committed or 0 for p in info.partitions if p.stream == "orders")


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
