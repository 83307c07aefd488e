"""A service with table outputs killed between its commit and the table batch, on SQLite and
PostgreSQL: the tables end with every row exactly once and exactly the values the input gives.

``ledger`` (``tests.support.table_apps``) runs as ``millstream run`` in a child process that
dies at the named fault point ``service.tables.before_apply`` (``os._exit``, no cleanup:
what a kill -9 leaves): its commit is done — the rows are durable in the tables' streams
and the inputs they came from are committed, so no restart processes them again — and the
tables have not been given those rows. Each death is checked to have left exactly that; the
restarted service must bring the rows in, and nothing twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import millstream
from millstream import StreamPartition, Streams
from millstream.codecs import ModelCodec
from millstream.faults import FAULT_EXIT_CODE
from millstream.tables import Tables, open_tables
from tests.support.children import REPO
from tests.support.table_apps import Order, app, expected, make_orders
from tests.support.waiting import wait_until

pytestmark = pytest.mark.multiprocess

N = 6_000
DEATHS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def tables_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def streams_url(tmp_path: Path) -> str:
    return f"local:{tmp_path / 'log'}?session_timeout_ms=1500&heartbeat_interval_ms=300"


@pytest.fixture
def tables(tables_url: str) -> Iterator[Tables]:
    with open_tables(tables_url) as handle:
        yield handle


def start(tmp_path: Path, streams_url: str, tables_url: str, fault: str | None,
          round_: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(MILLSTREAM_STREAMS=streams_url, MILLSTREAM_TABLES=tables_url,
               MILLSTREAM_HOME=str(tmp_path / "home"))
    env.pop("MILLSTREAM_FAULT", None)
    if fault:
        env["MILLSTREAM_FAULT"] = fault
    out = tmp_path / f"run{round_}.out"
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "millstream", "run", "tests.support.table_apps:app",
             "ledger", "--metrics-interval", "0.5"],
            cwd=REPO, env=env, stdout=stdout, stderr=stderr)


def stderr_of(tmp_path: Path, round_: int) -> str:
    return (tmp_path / f"run{round_}.err").read_text(errors="replace")[-3000:]


def ends(streams: Streams, stream: str) -> dict[StreamPartition, int]:
    return {StreamPartition(stream, p.partition): p.end
            for p in streams.admin().describe_stream(stream).partitions}


def committed(streams: Streams) -> int:
    info = streams.admin().describe_group("ledgerapp.ledger")
    return sum(p.committed or 0 for p in info.partitions if p.stream == "orders-in")


def reflected(tables: Tables, name: str) -> int:
    return sum(tables.table(name).offsets().values())


def test_killed_between_its_commit_and_the_table_batch_the_tables_lose_and_repeat_nothing(
        tmp_path: Path, streams_url: str, tables_url: str, tables: Tables) -> None:
    sent = make_orders(N)
    with millstream.open_streams(streams_url) as streams:
        streams.admin().create_stream("orders-in", app.streams["orders-in"].partitions)
        codec = ModelCodec(Order)
        encoded = [codec.encode(o) for o in sent]
        with streams.open_producer() as producer:
            producer.send_batch("orders-in", [v for v, _ in encoded],
                                keys=[o.customer.encode() for o in sent],
                                headers=[h for _, h in encoded])
            producer.flush(30)

        deaths = 0
        for round_ in range(DEATHS):
            before = committed(streams)
            proc = start(tmp_path, streams_url, tables_url, "service.tables.before_apply",
                         round_)
            try:
                code = proc.wait(120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            assert code == FAULT_EXIT_CODE, stderr_of(tmp_path, round_)
            deaths += 1
            # the moment: inputs committed further, their rows durable in the streams, and
            # the tables behind those streams
            assert committed(streams) > before
            for name in ("orders", "customers"):
                assert reflected(tables, name) < sum(ends(streams, name).values())
            print(f"death {deaths}: {committed(streams)} of {N} inputs committed, tables at "
                  f"{reflected(tables, 'orders')} and {reflected(tables, 'customers')} of "
                  f"{sum(ends(streams, 'orders').values())} rows each")
            if committed(streams) >= N:
                break

        proc = start(tmp_path, streams_url, tables_url, None, DEATHS)
        try:
            def finished() -> bool:
                assert proc.poll() is None, stderr_of(tmp_path, DEATHS)
                return committed(streams) >= N and all(
                    reflected(tables, name) == sum(ends(streams, name).values())
                    for name in ("orders", "customers"))
            wait_until(finished, 120, "the service to finish and its tables to catch up")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, stderr_of(tmp_path, DEATHS)

        assert deaths >= 1
        by_id, latest = expected(sent)
        orders, customers = tables.table("orders"), tables.table("customers")
        assert orders.count() == N
        assert customers.count() == 97
        assert dict(orders.scan()) == by_id
        assert dict(customers.scan()) == latest
        assert orders.offsets() == ends(streams, "orders")
        assert customers.offsets() == ends(streams, "customers")
