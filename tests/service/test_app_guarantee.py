"""One processing guarantee for the whole app (``App(..., processing="exactly-once")``).

* A stateful exactly-once service that reads a stream an at-least-once service of the same
  app writes is refused — when declared (in either order), when ``ServiceRunner`` starts it,
  and by ``millstream run`` / ``millstream up`` — with a message naming both services, the
  stream and what to change.
* The kill: validate → totals in two processes, validate killed (``os._exit``, as a kill -9)
  at ``service.batch.after_send`` — its batch's outputs sent, nothing committed — and
  restarted: under the app-wide exactly-once guarantee every valid order reaches totals once
  and every customer's total is exact. On the embedded log and on Kafka.
"""

from __future__ import annotations

import dataclasses
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
from pydantic import BaseModel

import millstream
from millstream.errors import InvalidRequestError
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime import CheckpointStore, ServiceRunner
from millstream.service import App, Context
from millstream.service._guarantees import Processing
from millstream.streams import Streams
from tests.support.children import REPO
from tests.support.waiting import wait_until


class Order(BaseModel):
    id: int
    customer: str
    amount: int


class Total(BaseModel):
    customer: str
    total: int


def shop(processing: Processing | None = None, *, totals_first: bool = False,
         validate_exactly_once: bool | None = None) -> App:
    app = App("shop") if processing is None else App("shop", processing=processing)

    def declare_validate() -> None:
        @app.service(inputs={"orders": Order}, outputs={"valid": Order},
                     exactly_once=validate_exactly_once)
        def validate(order: Order) -> Order | None:
            return order if order.amount > 0 else None

    def declare_totals() -> None:
        @app.service(inputs={"valid": Order}, outputs={"totals": Total}, stateful=True,
                     exactly_once=True)
        def totals(order: Order, ctx: Context) -> Total:
            ctx.state[order.customer] = ctx.state.get(order.customer, 0) + order.amount
            return Total(customer=order.customer, total=ctx.state[order.customer])

    for declare in ((declare_totals, declare_validate) if totals_first
                    else (declare_validate, declare_totals)):
        declare()
    return app


REFUSAL = ("stateful exactly-once service 'totals' reads stream 'valid', which at-least-once "
           "service 'validate' writes: after a crash 'validate' writes some records twice, "
           "and 'totals' would take each copy into its state. To fix it, ")


@pytest.mark.parametrize("totals_first", [False, True])
def test_a_stateful_exactly_once_reader_of_an_at_least_once_writer_is_refused_naming_both(
        totals_first: bool) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        shop(totals_first=totals_first)
    assert str(refused.value) == REFUSAL + (
        "declare the app exactly-once — App('shop', processing='exactly-once') — so every "
        "service commits in transactions, or at least declare 'validate' with "
        "exactly_once=True.")


def test_in_an_exactly_once_app_a_writer_may_not_step_down_under_a_stateful_reader() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        shop("exactly-once", validate_exactly_once=False)
    assert str(refused.value) == REFUSAL + (
        "remove exactly_once=False from service 'validate', so it runs exactly-once as the "
        "app does.")


def test_the_safe_declarations_are_accepted() -> None:
    app = shop("exactly-once")
    assert app.processing == "exactly-once"
    assert [s.exactly_once for s in app.services.values()] == [True, True]
    assert shop(validate_exactly_once=True).services["validate"].exactly_once
    # the default stays at-least-once; a stateless exactly-once reader, or a stateful
    # at-least-once one, may read an at-least-once stream
    plain = App("plain")

    @plain.service(inputs={"orders": Order}, outputs={"valid": Order})
    def validate(order: Order) -> Order:
        return order

    @plain.service(inputs={"valid": Order}, outputs={"copies": Order}, exactly_once=True)
    def copy(order: Order) -> Order:
        return order

    @plain.service(inputs={"valid": Order}, stateful=True)
    def count(order: Order, ctx: Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1

    assert plain.processing == "at-least-once"
    assert [s.exactly_once for s in plain.services.values()] == [False, True, False]


def test_an_unknown_guarantee_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequestError, match=r"processing='exactly_once' is not a "
                       r"processing guarantee; use 'at-least-once' \(the default\) or "
                       r"'exactly-once'"):
        App("shop", processing="exactly_once")  # type: ignore[arg-type]


def test_a_service_runner_refuses_an_app_changed_into_the_mix_after_its_declaration() -> None:
    app = shop("exactly-once")
    app.services["validate"] = dataclasses.replace(app.services["validate"],
                                                   exactly_once=False)
    with millstream.open_streams() as streams:
        for service in ("totals", "validate"):
            with pytest.raises(InvalidRequestError) as refused:
                ServiceRunner(app, service, streams)
            assert str(refused.value).startswith(REFUSAL)


def test_a_stateful_exactly_once_reader_of_a_stream_no_service_writes_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    app = shop("exactly-once")
    with millstream.open_streams() as streams, caplog.at_level("WARNING"):
        ServiceRunner(app, "totals", streams)  # its input is written by validate: no warning
        ServiceRunner(app, "validate", streams)  # stateless: no warning
        assert caplog.messages == []
        del app.services["validate"]
        ServiceRunner(app, "totals", streams)
    assert caplog.messages == [
        "stateful exactly-once service totals reads stream valid, which no service of app "
        "shop writes: millstream cannot check that its writer never sends a record twice (a "
        "retried send, a script run again), and a record sent twice is taken into the state "
        "twice"]


MIXED = '''
from pydantic import BaseModel
from millstream.service import App, Context

class Order(BaseModel):
    customer: str
    amount: int

app = App("mixed")

@app.service(inputs={"orders": Order}, outputs={"valid": Order})
def validate(order: Order) -> Order:
    return order

@app.service(inputs={"valid": Order}, stateful=True, exactly_once=True)
def totals(order: Order, ctx: Context) -> None:
    ctx.state[order.customer] = ctx.state.get(order.customer, 0) + order.amount
'''


@pytest.mark.parametrize("command", [["run", "mixed:app", "totals"], ["up", "mixed:app"]])
def test_millstream_run_and_up_refuse_the_mix_before_starting_anything(
        tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "mixed.py").write_text(MIXED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    done = subprocess.run([sys.executable, "-m", "millstream", *command], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert ("stateful exactly-once service 'totals' reads stream 'valid', which "
            "at-least-once service 'validate' writes") in message
    assert "App('mixed', processing='exactly-once')" in message
    assert "running as group" not in message  # nothing started


# -- the kill ---------------------------------------------------------------------------------

N = 1_000
CUSTOMERS = 10

SHOP_MODULE = '''
import time
from pydantic import BaseModel
from millstream.service import App, Context

class Order(BaseModel):
    id: int
    customer: str
    amount: int

class Total(BaseModel):
    customer: str
    total: int

app = App("shop{suffix}", partitions=2, processing="exactly-once")

@app.service(inputs={{"orders-{suffix}": Order}}, outputs={{"valid-{suffix}": Order}},
             max_batch=50)
def validate(order: Order) -> Order | None:
    """Passes the orders with a positive amount."""
    time.sleep(0.001)
    return order if order.amount > 0 else None

@app.service(inputs={{"valid-{suffix}": Order}}, outputs={{"totals-{suffix}": Total}},
             stateful=True, max_batch=50)
def totals(order: Order, ctx: Context) -> Total:
    """Each customer's running total."""
    total = ctx.state.get(order.customer, 0) + order.amount
    ctx.state[order.customer] = total
    return Total(customer=order.customer, total=total)
'''


def orders() -> list[Order]:
    return [Order(id=i, customer=f"c{i % CUSTOMERS}", amount=i % 7) for i in range(N)]


class Reader:
    """Reads a stream from its start, as a read-committed reader: what it has seen so far."""

    def __init__(self, streams: Streams, stream: str) -> None:
        self.consumer = streams.open_consumer()
        self.consumer.subscribe([stream])
        self.values: list[bytes] = []

    def read(self) -> int:
        self.values += [r.value or b"" for r in self.consumer.poll(max_records=5000,
                                                                     timeout=0.2)]
        return len(self.values)


def start(tmp_path: Path, suffix: str, url: str, service: str, out: Path,
          fault: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    env["MILLSTREAM_STREAMS"] = url
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    with open(out, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", f"shop_{suffix}:app", service,
             "--metrics-interval", "0.5"], cwd=tmp_path, env=env, stdout=sink,
            stderr=subprocess.STDOUT)


def committed(streams: Streams, group: str, stream: str) -> int:
    info = streams.admin().describe_group(group)
    return sum(p.committed or 0 for p in info.partitions if p.stream == stream)


def kill_validate_mid_batch_and_check_the_totals(tmp_path: Path, url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / f"shop_{suffix}.py").write_text(textwrap.dedent(
        SHOP_MODULE.format(suffix=suffix)))
    stream_orders, valid, totals = (f"orders-{suffix}", f"valid-{suffix}",
                                     f"totals-{suffix}")
    log = tmp_path / "services.log"
    given = orders()
    expected = {f"c{c}": sum(o.amount for o in given if o.customer == f"c{c}")
                for c in range(CUSTOMERS)}
    wanted = [o for o in given if o.amount > 0]
    with millstream.open_streams(url) as streams:
        for name in (stream_orders, valid, totals):
            streams.admin().create_stream(name, 2)
        with streams.open_producer() as producer:
            for order in given:
                producer.send(stream_orders, order.model_dump_json().encode(),
                              key=order.customer.encode(),
                              headers=(("content-type", b"application/json"),))
        # validate dies in its 6th batch: the batch's outputs sent, its commit not made
        crashed = start(tmp_path, suffix, url, "validate", log,
                        fault="service.batch.after_send:6")
        assert crashed.wait(120) == FAULT_EXIT_CODE, log.read_text()
        assert "fault point 'service.batch.after_send' reached" in log.read_text()
        assert committed(streams, f"shop{suffix}.validate", stream_orders) < N
        procs = [start(tmp_path, suffix, url, service, log) for service in
                 ("validate", "totals")]
        try:
            reader = Reader(streams, totals)
            wait_until(lambda: reader.read() >= len(wanted)
                       or any(p.poll() is not None for p in procs), 180,
                       f"totals to write {len(wanted)} outputs")
            assert all(p.poll() is None for p in procs), log.read_text()
            quiet = time.monotonic() + 3  # a duplicate would come after its original
            while time.monotonic() < quiet:
                reader.read()
            reader.consumer.close()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [p.wait(60) for p in procs]
        assert codes == [0, 0], log.read_text()
        passed = Reader(streams, valid)
        wait_until(lambda: passed.read() >= len(wanted), 60, "the valid orders")
        time.sleep(1)
        passed.read()
        passed.consumer.close()
        ids = Counter(Order.model_validate_json(v).id for v in passed.values)
        assert sorted(ids) == [o.id for o in wanted]  # every valid order ...
        assert max(ids.values()) == 1  # ... exactly once, though validate was killed
        outputs = [Total.model_validate_json(v) for v in reader.values]
        assert len(outputs) == len(wanted)  # one total per valid order, none twice
        last = {t.customer: t.total for t in outputs}
        assert last == expected  # and every total exact
        store = CheckpointStore(streams, f"shop{suffix}.totals")
        store.refresh()
        state: dict[str, int] = {}
        for number in (0, 1):
            latest = store.latest(number)
            assert latest is not None
            state.update(latest.state)
        assert state == expected


@pytest.mark.multiprocess
def test_exactly_once_app_killed_mid_batch_keeps_exact_totals_on_the_embedded_log(
        tmp_path: Path) -> None:
    kill_validate_mid_batch_and_check_the_totals(
        tmp_path, "local:?session_timeout_ms=1500&heartbeat_interval_ms=300")


def test_exactly_once_app_killed_mid_batch_keeps_exact_totals_on_kafka(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    kill_validate_mid_batch_and_check_the_totals(
        tmp_path, f"kafka://{kafka_bootstrap}?session.timeout.ms=6000"
                  "&heartbeat.interval.ms=1000")
