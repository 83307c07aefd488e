"""The service runtime on a real Kafka: the same app as on the embedded log.

* at-least-once, in-process: outputs, metrics and exception records as on the embedded log;
* exactly-once with Kafka transactions (``send_offsets_to_transaction``): the service is
  killed at named fault points just before and just after a transaction commits, restarted,
  and every input comes out exactly once for a ``read_committed`` reader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import millstream
from millstream._wellknown import EXCEPTIONS, METRICS
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime import ServiceRunner
from millstream.runtime._failures import parse_exception
from millstream.runtime._state import CheckpointStore
from millstream.service import App, Context, RetryPolicy
from millstream.streams._base import Streams
from tests.service.test_runtime import Invoice, Order, read_all, run_until, send_orders
from tests.support.children import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.kafka

N = 600

APP_MODULE = '''
import os, time
from pydantic import BaseModel
from millstream.service import App

class Item(BaseModel):
    id: int
    n: int

app = App("kt{suffix}", partitions=2)

@app.service(inputs={{"items-{suffix}": Item}}, outputs={{"doubled-{suffix}": Item}},
             exactly_once=True, max_batch=50)
def double(item: Item) -> Item:
    time.sleep(0.002)
    return Item(id=item.id, n=item.n * 2)
'''


def url(bootstrap: str) -> str:
    # Kafka's minimum session timeout: a killed member's partitions move within ~6 s
    return f"kafka://{bootstrap}?session.timeout.ms=6000&heartbeat.interval.ms=1000"


def committed(streams: Streams, group: str, stream: str) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == stream)


def test_the_runtime_on_kafka_at_least_once(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = App(f"k{suffix}", partitions=3)
    orders, invoices = f"orders-{suffix}", f"invoices-{suffix}"

    @app.service(inputs={orders: Order}, outputs={invoices: Invoice},
                 retry=RetryPolicy(attempts=2, backoff=0.001))
    def billing(order: Order) -> Invoice:
        if order.id == 13:
            raise ValueError("unlucky")
        return Invoice(order_id=order.id, amount=order.total)

    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        before_exceptions = streams.admin().describe_stream(EXCEPTIONS).records
        send_orders(streams, [Order(id=i, total=i) for i in range(200)], stream=orders)
        run_until(runner, lambda r: r.metrics.records_in >= 200, timeout=90)
        got = sorted(Invoice.model_validate_json(r.value or b"").order_id
                     for r in read_all(streams, invoices))
        assert got == [i for i in range(200) if i != 13]
        assert committed(streams, app.services["billing"].group, orders) == 200
        failures = [f for f in map(parse_exception, read_all(streams, EXCEPTIONS))
                    if f is not None and f.group == app.services["billing"].group]
        assert len(failures) == 1 and failures[0].attempts == 2
        assert failures[0].input["stream"] == orders
        assert streams.admin().describe_stream(EXCEPTIONS).records == before_exceptions + 1
        finals = [json.loads(r.value or b"") for r in read_all(streams, METRICS)
                  if r.key == app.services["billing"].group.encode()]
        assert finals[-1]["final"] and finals[-1]["totals"]["in"] == 200
        assert finals[-1]["totals"]["out"] == 199 and finals[-1]["totals"]["exceptions"] == 1


def read_ids(streams: Streams, stream: str) -> Counter[int]:
    """Ids in ``stream`` as a read_committed reader sees them: until every id arrived, then
    2 s more (a duplicate would come after its original)."""
    ids: Counter[int] = Counter()
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            for r in reader.poll(max_records=1000, timeout=0.2):
                ids[json.loads(r.value or b"")["id"]] += 1
            if len(ids) >= N and quiet_until is None:
                quiet_until = time.monotonic() + 2
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    return ids


def _start(tmp_path: Path, suffix: str, bootstrap: str, fault: str | None,
           out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    env["MILLSTREAM_STREAMS"] = url(bootstrap)
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(out, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", f"eosapp_{suffix}:app", "double"],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("fault", [
    "service.transaction.before_commit:4",   # records produced in the open transaction
    "service.transaction.after_commit:4",    # committed, nothing after it done
])
def test_exactly_once_on_kafka_survives_a_kill_at_the_transaction(
        kafka_bootstrap: str, tmp_path: Path, fault: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / f"eosapp_{suffix}.py").write_text(textwrap.dedent(
        APP_MODULE.format(suffix=suffix)))
    items, doubled, group = f"items-{suffix}", f"doubled-{suffix}", f"kt{suffix}.double"
    log = tmp_path / "service.log"
    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        streams.admin().create_stream(items, 2)
        with streams.open_producer() as producer:
            for i in range(N):
                producer.send(items, json.dumps({"id": i, "n": i}).encode(),
                              key=str(i).encode(),
                              headers=(("content-type", b"application/json"),))
        crashed = _start(tmp_path, suffix, kafka_bootstrap, fault, log)
        assert crashed.wait(120) == FAULT_EXIT_CODE, log.read_text()
        assert committed(streams, group, items) < N
        proc = _start(tmp_path, suffix, kafka_bootstrap, None, log)
        try:
            wait_until(lambda: committed(streams, group, items) >= N or
                       proc.poll() is not None, 120, "the restarted service to finish")
            assert proc.poll() is None, log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
        ids = read_ids(streams, doubled)
        assert set(ids) == set(range(N))
        assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:10]


def test_stateful_exactly_once_on_kafka_restores_state_from_transactional_checkpoints(
        kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = App(f"ks{suffix}", partitions=2)
    orders, totals = f"orders-{suffix}", f"totals-{suffix}"

    @app.service(inputs={orders: Order}, outputs={totals: Invoice}, stateful=True,
                 exactly_once=True)
    def running_total(order: Order, ctx: Context) -> Invoice:
        total = ctx.state.get("total", 0.0) + order.total
        ctx.state["total"] = total
        return Invoice(order_id=order.id, amount=total)

    with millstream.open_streams(url(kafka_bootstrap)) as streams:
        first = ServiceRunner(app, "running_total", streams, metrics_interval_s=60)
        first.prepare()
        send_orders(streams, [Order(id=i, total=1.0) for i in range(40)], stream=orders)
        run_until(first, lambda r: r.metrics.records_in >= 40, timeout=90)
        send_orders(streams, [Order(id=i, total=1.0) for i in range(40, 50)], stream=orders)
        started = time.monotonic()
        second = ServiceRunner(app, "running_total", streams, metrics_interval_s=60)
        run_until(second, lambda r: r.metrics.records_in >= 10, timeout=90)
        # the checkpoints (written in transactions) were read to their end at once
        assert time.monotonic() - started < 30
        assert second.statistics().records_in == 10  # nothing re-processed
        store = CheckpointStore(streams, app.services["running_total"].group)
        store.refresh()
        totals_by_partition = [store.latest(p).state["total"]  # type: ignore[union-attr]
                               for p in (0, 1)]
        assert sum(totals_by_partition) == 50.0
        ids = read_ids_models(streams, totals, 50)
        assert sorted(ids) == list(range(50))  # every output once


def read_ids_models(streams: Streams, stream: str, want: int) -> list[int]:
    ids: list[int] = []
    with streams.open_consumer() as reader:
        reader.subscribe([stream])
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            ids += [Invoice.model_validate_json(r.value or b"").order_id
                    for r in reader.poll(max_records=1000, timeout=0.2)]
            if len(ids) >= want and quiet_until is None:
                quiet_until = time.monotonic() + 2
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
    return ids
