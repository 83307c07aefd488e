"""``ServiceThreads``: an app's services in threads of one process — started with their
streams, stopped cleanly, and a dead instance's error reported while the others run on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

import millstream
from millstream.codecs import ModelCodec
from millstream.runtime import ServiceError, ServiceThreads
from millstream.service import App, Context


class Order(BaseModel):
    id: int


def make_app(entered: threading.Event | None = None,
             gate: threading.Event | None = None) -> App:
    app = App("shop", partitions=4)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Order})
    def billing(order: Order) -> Order:
        if entered is not None and gate is not None:
            entered.set()
            gate.wait()
        return order

    @app.service(inputs={"orders": Order}, stateful=True, checkpoint_records=1)
    def remember(order: Order, ctx: Context) -> None:
        if order.id == 13:
            ctx.state["seen"] = {order.id}  # not JSON: its checkpoint fails, its run raises

    return app


def send(url: str, ids: range) -> None:
    codec = ModelCodec(Order)
    with millstream.open_streams(url) as streams, streams.open_producer() as producer:
        for i in ids:
            value, headers = codec.encode(Order(id=i))
            producer.send("orders", value, key=str(i).encode(), headers=headers)
        producer.flush()


def wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def options() -> dict[str, float]:
    return {"metrics_interval_s": 60.0, "poll_timeout_s": 0.05}


def test_every_instance_runs_in_a_thread_of_its_own_and_stops_cleanly(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    threads = ServiceThreads(make_app(), lambda: millstream.open_streams(url), ["billing"],
                             instances=2, **options())
    assert [(r.spec.name, r.instance) for r in threads.runners] == [("billing", 0),
                                                                    ("billing", 1)]
    with threads:
        with millstream.open_streams(url) as streams:  # start() made the streams
            assert streams.admin().describe_stream("invoices").partition_count == 4
        assert sorted(t.name for t in threading.enumerate()
                      if t.name.startswith("millstream-billing-")) == [
            "millstream-billing-0", "millstream-billing-1"]
        send(url, range(40))
        wait(lambda: threads.statistics("billing").records_out == 40)
    assert not threads.alive
    assert threads.stop() == []  # idempotent
    stats = threads.statistics("billing")
    assert (stats.records_in, stats.records_out, stats.exceptions) == (40, 40, 0)
    assert sum(r.statistics().records_in for r in threads.runners) == 40
    assert threads.errors == []
    threads.raise_error()  # nothing to raise


def test_a_dead_instance_is_reported_and_the_others_keep_running(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    with ServiceThreads(make_app(), lambda: millstream.open_streams(url),
                        **options()) as threads:
        send(url, range(10, 16))
        wait(lambda: bool(threads.errors))
        (failure,) = threads.errors
        assert (failure.service, failure.instance) == ("remember", 0)
        assert isinstance(failure, ServiceError)
        assert str(failure).startswith("remember#0: InvalidRequestError: ")
        assert "not JSON-serialisable" in str(failure)
        send(url, range(100, 104))  # billing still runs
        wait(lambda: threads.statistics("billing").records_out == 10)
        assert threads.alive
        with pytest.raises(millstream.InvalidRequestError) as raised:
            threads.raise_error()
        assert raised.value is failure.error
        threads.raise_error()  # raised once
    assert not threads.alive


def test_leaving_the_block_raises_what_killed_an_instance_unless_the_block_failed(
        tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    threads = ServiceThreads(make_app(), lambda: millstream.open_streams(url), ["remember"],
                             **options())
    with pytest.raises(millstream.InvalidRequestError, match="not JSON-serialisable"), threads:
        send(url, range(13, 14))
        wait(lambda: bool(threads.errors))
    assert not threads.alive
    again = ServiceThreads(make_app(), lambda: millstream.open_streams(url), ["remember"],
                           **options())
    with pytest.raises(KeyError, match="the block's own"), again:
        send(url, range(13, 14))
        wait(lambda: len(again.errors) == 1)
        raise KeyError("the block's own")
    assert not again.alive


def test_stop_names_the_threads_still_running_after_the_timeout(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    entered, gate = threading.Event(), threading.Event()
    threads = ServiceThreads(make_app(entered, gate), lambda: millstream.open_streams(url),
                             ["billing"], **options()).start()
    try:
        send(url, range(1))
        assert entered.wait(20)  # the instance is in its handler, held there
        assert threads.stop(timeout=0.2) == ["millstream-billing-0"]
        assert threads.alive
    finally:
        gate.set()
    assert threads.stop(timeout=10) == []
    assert not threads.alive and threads.errors == []


def test_an_unknown_service_or_count_is_refused_before_anything_is_opened(
        tmp_path: Path) -> None:
    opened: list[millstream.Streams] = []

    def connect() -> millstream.Streams:
        opened.append(millstream.open_streams(f"local:{tmp_path / 'log'}"))
        return opened[-1]

    with pytest.raises(millstream.InvalidRequestError, match="nope"):
        ServiceThreads(make_app(), connect, ["billing", "nope"])
    with pytest.raises(millstream.InvalidRequestError, match="instances of 'billing'=0"):
        ServiceThreads(make_app(), connect, instances={"billing": 0})
    assert opened == []


def test_a_stopped_or_started_one_cannot_start_again(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'log'}"
    never = ServiceThreads(make_app(), lambda: millstream.open_streams(url), ["billing"])
    assert never.stop() == []
    with pytest.raises(millstream.InvalidRequestError, match="starts once"):
        never.start()
    once = ServiceThreads(make_app(), lambda: millstream.open_streams(url), ["billing"],
                          **options()).start()
    with pytest.raises(millstream.InvalidRequestError, match="starts once"):
        once.start()
    assert once.stop() == [] and not once.alive
