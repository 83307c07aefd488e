"""Exactly-once windows on the embedded log: a windowed service killed (``os._exit``, what a
kill -9 leaves) at each named fault point of its flush, its transaction and its table feed,
then run to the end, leaves exactly the window table, the results and the late records the
reference model computes — the same as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

import millstream
from millstream.tables import open_tables
from tests.windows.crashing import (
    Child,
    committed,
    crash_then_finish,
    join_mid_run,
    outcome,
    reference,
    send,
    traffic,
)

pytestmark = pytest.mark.multiprocess

N = 3000


@pytest.mark.parametrize("fault", [
    None,  # the uninterrupted run
    "windows.flush.before_emit:6",      # rows of changed windows not yet sent
    "windows.flush.after_emit:6",       # rows sent into the open transaction
    "service.transaction.before_commit:6",
    "service.transaction.after_commit:6",
    "service.tables.before_apply:4",    # committed, the table not yet given the rows
])
def test_a_windowed_service_killed_at_a_fault_point_ends_as_an_uninterrupted_run(
        tmp_path: Path, fault: str | None) -> None:
    streams_url = f"local:{tmp_path / 'log'}?session_timeout_ms=1500&heartbeat_interval_ms=300"
    tables_url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    sent = traffic(N)
    want = reference(sent)
    assert want.late and want.results and len(want.table) > 20
    with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables:
        from millstream.runtime._streams import ensure_app_streams
        from tests.windows.crash_app import app
        ensure_app_streams(app, streams)
        send(streams, "", sent)
        child = Child(tmp_path, streams_url, tables_url, "")
        died = crash_then_finish(child, streams, tables, fault or "", len(sent))
        if fault is not None:
            assert died >= 1, child.tail()
        assert committed(streams, "") == len(sent)
        table, results, late = outcome(streams, tables, "")
    assert table == want.table
    assert results == want.results
    assert late == want.late


@pytest.mark.parametrize("fault", [
    "windows.flush.before_emit:3",
    "windows.flush.after_emit:3",
    "service.checkpoint.before_write:3",   # rows durable, the checkpoint not written
    "service.checkpoint.after_write:3",    # checkpoint written, offsets not committed
])
def test_at_least_once_a_killed_windowed_service_still_ends_with_the_exact_table(
        tmp_path: Path, fault: str) -> None:
    """At least once, outputs since the last checkpoint come out again after a crash, but
    the table is keyed by window and its rows are the state's: it ends exact; results and
    late records may repeat, none is missing."""
    streams_url = f"local:{tmp_path / 'log'}?session_timeout_ms=1500&heartbeat_interval_ms=300"
    tables_url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    sent = traffic(N)
    want = reference(sent)
    with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables:
        from millstream.runtime._streams import ensure_app_streams
        from tests.windows.crash_app import app
        ensure_app_streams(app, streams)
        send(streams, "", sent)
        child = Child(tmp_path, streams_url, tables_url, "", processing="at-least-once")
        assert crash_then_finish(child, streams, tables, fault, len(sent)) >= 1, child.tail()
        table, results, late = outcome(streams, tables, "")
    assert table == want.table
    assert sorted({tuple(sorted(r.items())) for r in results}) == sorted(
        tuple(sorted(r.items())) for r in want.results)
    assert sorted(set(late)) == want.late


def test_a_second_process_joining_mid_run_leaves_the_uninterrupted_runs_outcome(
        tmp_path: Path) -> None:
    # no member dies here, so nothing waits for a lease to run out: a long session, so that
    # a heartbeat thread a loaded machine holds up for 1.5 s does not expire a live member
    streams_url = f"local:{tmp_path / 'log'}?session_timeout_ms=30000&heartbeat_interval_ms=300"
    tables_url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    sent = traffic(N)
    want = reference(sent)
    with millstream.open_streams(streams_url) as streams, open_tables(tables_url) as tables:
        from millstream.runtime._streams import ensure_app_streams
        from tests.windows.crash_app import app
        ensure_app_streams(app, streams)
        send(streams, "", sent)
        child = Child(tmp_path, streams_url, tables_url, "", slow_s=0.002)
        assert join_mid_run(child, streams, len(sent)) < len(sent) // 2, child.tail()
        table, results, late = outcome(streams, tables, "")
    assert table == want.table
    assert results == want.results
    assert late == want.late
