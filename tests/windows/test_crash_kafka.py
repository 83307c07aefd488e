"""Exactly-once windows on Kafka: a windowed service killed at the named fault points of its
flush and its transaction, then run to the end, leaves exactly the window table, results and
late records the reference model computes (as ``read_committed`` readers see them)."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import pytest

import millstream
from millstream.runtime._streams import ensure_app_streams
from millstream.tables import open_tables
from tests.windows import crash_app
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

pytestmark = pytest.mark.kafka

N = 2000


def url(bootstrap: str) -> str:
    # Kafka's minimum session timeout: a killed member's partitions move within ~6 s
    return f"kafka://{bootstrap}?session.timeout.ms=6000&heartbeat.interval.ms=1000"


@pytest.mark.parametrize("fault", [
    "windows.flush.before_emit:6",
    "windows.flush.after_emit:6",
    "service.transaction.before_commit:6",
    "service.transaction.after_commit:6",
])
def test_on_kafka_a_killed_windowed_service_ends_as_an_uninterrupted_run(
        kafka_bootstrap: str, tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    suffix = f"-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("WINDOWS_SUFFIX", suffix)  # the app module, imported here, too
    importlib.reload(crash_app)
    # unsuffixed again after (the environment first)
    request.addfinalizer(lambda: (monkeypatch.undo(), importlib.reload(crash_app)))
    tables_url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    sent = traffic(N)
    want = reference(sent)
    with millstream.open_streams(url(kafka_bootstrap)) as streams, \
            open_tables(tables_url) as tables:
        ensure_app_streams(crash_app.app, streams)
        send(streams, suffix, sent)
        child = Child(tmp_path, url(kafka_bootstrap), tables_url, suffix)
        died = crash_then_finish(child, streams, tables, fault, len(sent), deaths=2,
                                 timeout=240)
        assert died >= 1, child.tail()
        assert committed(streams, suffix) == len(sent)
        table, results, late = outcome(streams, tables, suffix)
    assert table == want.table
    assert results == want.results
    assert late == want.late


def test_on_kafka_a_second_process_joining_mid_run_loses_nothing(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    suffix = f"-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("WINDOWS_SUFFIX", suffix)
    importlib.reload(crash_app)
    request.addfinalizer(lambda: (monkeypatch.undo(), importlib.reload(crash_app)))
    tables_url = "sqlite:///" + str(tmp_path / "tables.db").lstrip("/")
    sent = traffic(N)
    want = reference(sent)
    with millstream.open_streams(url(kafka_bootstrap)) as streams, \
            open_tables(tables_url) as tables:
        ensure_app_streams(crash_app.app, streams)
        send(streams, suffix, sent)
        child = Child(tmp_path, url(kafka_bootstrap), tables_url, suffix, slow_s=0.01)
        assert join_mid_run(child, streams, len(sent), timeout=240) < len(sent) // 2, \
            child.tail()
        table, results, late = outcome(streams, tables, suffix)
    assert table == want.table
    assert results == want.results
    assert late == want.late
