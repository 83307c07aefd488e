"""Watching services: the aggregation of metrics records (rates, merged percentiles, lag,
stalled/silent/stopped, every run counted), `millstream top` (80 columns, plain rows when piped)
and real services stopped cleanly or killed, the Prometheus text and `metrics serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

import millstream
from millstream._wellknown import METRICS
from millstream.cli.top import metrics_group, render_lines, top_command
from millstream.codecs import ModelCodec
from millstream.errors import NotFoundError
from millstream.observe import (
    CONTENT_TYPE,
    MetricsServer,
    MetricsTable,
    MetricsView,
    prometheus_text,
)
from millstream.observe._health import instance_view, is_stalled, service_view
from millstream.records import StreamPartition
from millstream.runtime import Counters, MetricsRecord, ServiceRunner
from millstream.runtime._histogram import Histogram
from millstream.runtime._metrics import Metrics
from millstream.service import App, RetryPolicy
from millstream.streams._base import Streams
from tests.cli.parsing import row, rows
from tests.service.test_crash import STREAMS_URL, N, committed, crash, produce_items
from tests.support.apps import app as testapp
from tests.support.children import REPO

T0 = 1_700_000_000_000


def hist(*values: int) -> dict[str, object]:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.to_dict()


def doc(*, group: str = "shop.billing", instance: str = "h:1", time_ms: int = T0,
        interval_ms: int = 5000, interval: dict[str, int] | None = None,
        totals: dict[str, int] | None = None, lag: dict[str, int] | None = None,
        assigned: Iterable[str] | None = None, values: Iterable[int] = (),
        final: bool = False) -> MetricsRecord:
    """A metrics record as ``Metrics`` writes it (unset counters are 0), read from the JSON
    object on the stream."""
    zero = {"in": 0, "out": 0, "errors": 0, "retries": 0, "exceptions": 0}
    lag = lag or {}
    app, _, service = group.partition(".")
    return MetricsRecord.parse({
        "kind": "service", "app": app, "service": service, "group": group,
        "instance": instance, "version": "1", "time_ms": time_ms, "started_ms": T0 - 60_000,
        "interval_ms": interval_ms, "totals": {**zero, **(totals or {})},
        "interval": {**zero, **(interval or {})}, "processing": {},
        "histogram": hist(*values), "lag": lag,
        "assigned": list(assigned if assigned is not None else lag), "final": final,
    })


def table_of(*docs: MetricsRecord) -> MetricsTable:
    table = MetricsTable()
    for d in docs:
        assert table.add(d)
    return table


# -- aggregation --------------------------------------------------------------------------------


def test_rates_are_summed_per_second_over_each_instance_interval() -> None:
    snap = table_of(
        doc(instance="a", interval_ms=5000, interval={"in": 500, "out": 450}),
        doc(instance="b", interval_ms=2000, interval={"in": 300, "out": 300}),
    ).snapshot(T0 / 1000)
    svc = snap.get("shop.billing")
    assert [i.rate_in for i in svc.instances] == [100.0, 150.0]
    assert (svc.rate_in, svc.rate_out) == (250.0, 240.0)
    assert (svc.alive, svc.status) == (2, "running")


def test_percentiles_merge_the_latest_interval_histogram_of_each_instance() -> None:
    table = table_of(
        doc(instance="a", time_ms=T0 - 5000, values=[25] * 1000),  # superseded below
        doc(instance="a", values=[10] * 90),
        doc(instance="b", values=[30] * 10),
    )
    svc = table.snapshot(T0 / 1000).get("shop.billing")
    assert svc.histogram.count == 100
    assert svc.percentile_ms(0.50) == 0.010
    assert svc.percentile_ms(0.90) == 0.010
    assert svc.percentile_ms(0.99) == 0.030  # neither instance alone has this p99
    assert [i.histogram.percentile(0.99) for i in svc.instances] == [10, 30]
    # the processing count and sum run over every record the reader saw
    a = svc.instances[0]
    assert (a.processed_count, a.processed_us) == (1090, 25 * 1000 + 10 * 90)


def test_empty_histograms_give_no_percentile() -> None:
    svc = table_of(doc()).snapshot(T0 / 1000).get("shop.billing")
    assert svc.percentile_ms(0.5) is None


def test_lag_sums_the_newest_report_of_each_partition() -> None:
    snap = table_of(
        doc(instance="a", lag={"orders/0": 5, "orders/1": 7}),
        doc(instance="b", lag={"orders/2": 11}),
        # stopped earlier, when it owned orders/2: b's newer report wins
        doc(instance="c", time_ms=T0 - 3000, lag={"orders/2": 99, "orders/3": 4}, final=True),
    ).snapshot(T0 / 1000)
    svc = snap.get("shop.billing")
    assert svc.partition_lag == {"orders/0": 5, "orders/1": 7, "orders/2": 11, "orders/3": 4}
    assert svc.lag == 27


def test_errors_count_running_intervals_and_every_instance_total() -> None:
    svc = table_of(
        doc(instance="a", interval={"errors": 2, "exceptions": 1},
            totals={"errors": 7, "exceptions": 3, "in": 5000}),
        doc(instance="b", interval={"errors": 1}, totals={"errors": 1, "in": 900}),
        doc(instance="c", interval={"errors": 5, "exceptions": 5},
            totals={"errors": 3, "exceptions": 2, "in": 10}, final=True),
    ).snapshot(T0 / 1000).get("shop.billing")
    assert (svc.errors, svc.exceptions) == (3, 1)
    assert svc.totals == Counters(records_in=5910, records_out=0, errors=11, retries=0,
                                  exceptions=5)


@pytest.mark.parametrize(("before", "after"), [(10, 15), (15, 15)])
def test_stalled_when_assigned_reading_nothing_and_lag_not_falling(before: int,
                                                                   after: int) -> None:
    previous = doc(time_ms=T0 - 5000, lag={"orders/0": before})
    latest = doc(lag={"orders/0": after})
    assert is_stalled(latest, previous)
    svc = table_of(previous, latest).snapshot(T0 / 1000).get("shop.billing")
    assert (svc.instances[0].status, svc.status, svc.stalled) == ("stalled", "stalled", True)
    assert svc.alive == 1


@pytest.mark.parametrize("case", ["idle", "falling", "reading", "unassigned", "rebalanced"])
def test_not_stalled(case: str) -> None:
    previous = doc(time_ms=T0 - 5000, lag={"orders/0": 10})
    latest = {
        "idle": doc(lag={"orders/0": 0}),
        "falling": doc(lag={"orders/0": 9}),
        "reading": doc(lag={"orders/0": 12}, interval={"in": 1}),
        "unassigned": doc(lag={"orders/0": 12}, assigned=[]),
        "rebalanced": doc(lag={"orders/0": 12, "orders/1": 3}),
    }[case]
    if case == "idle":
        previous = doc(time_ms=T0 - 5000, lag={"orders/0": 0})
    assert not is_stalled(latest, previous)
    assert table_of(previous, latest).snapshot(T0 / 1000).get("shop.billing").status == "running"


def test_one_record_is_not_enough_to_call_an_instance_stalled() -> None:
    assert not is_stalled(doc(lag={"orders/0": 10}), None)


def test_silent_after_three_intervals_by_the_injected_clock() -> None:
    table = table_of(doc(time_ms=T0, interval_ms=5000))
    assert table.snapshot((T0 + 15_000) / 1000).get("shop.billing").status == "running"
    svc = table.snapshot((T0 + 15_001) / 1000).get("shop.billing")
    assert (svc.status, svc.silent, svc.alive, svc.instances[0].up) == ("silent", True, 0, False)


def test_short_intervals_are_silent_only_after_the_floor() -> None:
    latest = doc(time_ms=T0, interval_ms=1000)
    assert instance_view(latest, None, T0 + 10_000).status == "running"
    assert instance_view(latest, None, T0 + 10_001).status == "silent"
    assert instance_view(latest, None, T0 + 10_001, silent_floor_ms=2000).status == "silent"
    assert instance_view(latest, None, T0 + 2_999, silent_floor_ms=2000).status == "running"


def test_a_tables_clock_and_silence_floor_are_seconds() -> None:
    table = MetricsTable(silent_floor=20.5)  # seconds; the record's interval makes 15 s
    assert table.add(doc(time_ms=T0, interval_ms=5000))
    assert table.snapshot(T0 / 1000 + 20.5).get("shop.billing").status == "running"
    svc = table.snapshot(T0 / 1000 + 20.501).get("shop.billing")
    assert (svc.status, svc.instances[0].time_ms) == ("silent", T0)  # records keep their ms
    assert table.snapshot(T0 / 1000 + 20.501).time_ms == T0 + 20_501


def test_a_silent_instance_beside_a_running_one_leaves_the_service_running() -> None:
    snap = table_of(
        doc(instance="a", time_ms=T0 - 60_000, interval={"in": 100}),
        doc(instance="b", time_ms=T0 - 1000, interval={"in": 50}),
    ).snapshot(T0 / 1000)
    svc = snap.get("shop.billing")
    assert [i.status for i in svc.instances] == ["silent", "running"]
    assert (svc.status, svc.silent, svc.alive, svc.count("silent")) == ("running", False, 1, 1)
    assert svc.rate_in == 10.0  # the silent instance's old interval does not count


def test_final_record_means_stopped_not_silent() -> None:
    table = table_of(doc(time_ms=T0 - 5000, interval={"in": 5}),
                     doc(time_ms=T0, interval_ms=20, interval={"in": 5}, final=True))
    svc = table.snapshot((T0 + 3_600_000) / 1000).get("shop.billing")
    assert (svc.instances[0].status, svc.status, svc.silent) == ("stopped", "stopped", False)
    assert (svc.alive, svc.rate_in) == (0, 0.0)


@pytest.mark.parametrize(("killed_at", "stopped_at", "status"), [
    (T0 - 60_000, T0 - 5000, "stopped"),   # killed, restarted, then stopped cleanly
    (T0 - 60_000, T0 - 70_000, "silent"),  # stopped cleanly, then the other one went quiet
])
def test_when_none_runs_the_instance_heard_from_last_decides(killed_at: int, stopped_at: int,
                                                             status: str) -> None:
    svc = table_of(doc(instance="h:1", time_ms=killed_at),
                   doc(instance="h:2", time_ms=stopped_at, final=True)).snapshot(T0 / 1000).get(
        "shop.billing")
    assert sorted(i.status for i in svc.instances) == ["silent", "stopped"]
    assert (svc.status, svc.silent, svc.alive) == (status, status == "silent", 0)


def test_two_runs_with_one_instance_name_are_two_instances() -> None:
    first = doc(instance="h:1", time_ms=T0 - 9000, totals={"exceptions": 4}, final=True)
    second = doc(instance="h:1", time_ms=T0 - 1000, totals={"exceptions": 3}, final=True)
    first, second = (first.model_copy(update={"run": "aaaa"}),
                     second.model_copy(update={"run": "bbbb"}))
    svc = table_of(first, second).snapshot(T0 / 1000).get("shop.billing")
    assert [i.run for i in svc.instances] == ["aaaa", "bbbb"]
    assert svc.totals.exceptions == 7


def test_the_live_screen_fits_an_80_column_terminal() -> None:
    from rich.console import Console

    from millstream.cli.top import _screen

    now = now_ms()
    screen = Console(width=80, record=True, force_terminal=True, color_system=None)
    screen.print(_screen(table_of(*fleet(now)).snapshot(now / 1000), None, 80))
    lines = screen.export_text().splitlines()
    assert lines[1:] == FLEET_AT_80
    assert lines[0].startswith("millstream top ") and lines[0].endswith(
        ", 6 services, all retained metrics; Ctrl-C quits")


def test_table_ignores_what_is_not_a_newer_service_metrics_record() -> None:
    table = table_of(doc(time_ms=T0, totals={"in": 5}))
    assert not table.add(doc(time_ms=T0 - 1, totals={"in": 1}))  # older than the latest
    assert not table.add_bytes(b'{"kind": "something-else"}')
    assert not table.add_bytes(b"not json")
    assert not table.add_bytes(None)
    assert not table.add_bytes(b'{"kind": "service", "group": "g"}')  # no instance / time
    assert table.skipped == 4
    assert table.snapshot(T0 / 1000).get("shop.billing").totals.records_in == 5


def test_reads_the_document_the_real_metrics_class_writes() -> None:
    metrics = Metrics("shop", "billing", "shop.billing", "3")
    metrics.records_in, metrics.records_out, metrics.errors = 40, 38, 2
    for _ in range(40):
        metrics.histogram.record(20)
    metrics.lag = {StreamPartition("orders", 0): 6}
    metrics.assigned = [StreamPartition("orders", 0)]
    real = MetricsRecord.parse(json.dumps(metrics.snapshot()))  # as the runner sends it
    inst = service_view([instance_view(real, None, real.time_ms)]).instances[0]
    assert (inst.app, inst.service, inst.group, inst.version) == ("shop", "billing",
                                                                  "shop.billing", "3")
    assert inst.totals == Counters(records_in=40, records_out=38, errors=2, retries=0,
                                   exceptions=0)
    assert inst.interval == inst.totals
    assert (inst.lag, inst.assigned, inst.status) == ({"orders/0": 6}, ("orders/0",), "running")
    assert inst.histogram.percentile(0.5) == 20


# -- Prometheus text ----------------------------------------------------------------------------

_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], str]


def parse_prometheus(text: str) -> tuple[dict[str, str], Samples]:
    """``(types, samples)``: each family's TYPE, and each sample's value by name and labels.
    Checks that every sample follows its family's HELP and TYPE lines."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: Samples = {}
    family = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            family = line.split(" ")[2]
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == family, line
            types[name] = kind
            continue
        match = _SAMPLE.fullmatch(line)
        assert match is not None, line
        name, raw_labels, value = match.groups()
        base = re.sub(r"_(count|sum)$", "", name) if family and family != name else name
        assert base == family and family in types, line
        labels: list[tuple[str, str]] = []
        rest = raw_labels or ""
        while rest:
            m = _LABEL.match(rest)
            assert m is not None, line
            labels.append((m.group(1), _unescape(m.group(2))))
            rest = rest[m.end():]
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = value
    return types, samples


def lset(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_prometheus_text_has_exact_counters_gauges_and_summaries() -> None:
    weird = 'h"q\\x\ny'  # a quote, a backslash and a newline, escaped per the format
    snap = table_of(
        doc(instance="a", time_ms=T0 - 5000, values=[7] * 4),
        doc(instance="a", totals={"in": 5000, "out": 4500, "errors": 7, "retries": 4,
                                  "exceptions": 3},
            lag={"orders/0": 5, "orders/1": 7}, values=[10] * 90 + [30] * 10),
        doc(instance=weird, time_ms=T0 - 60_000, totals={"in": 1}),
        doc(group="shop.stuck", time_ms=T0 - 5000, lag={"my/stream/0": 3}),
        doc(group="shop.stuck", lag={"my/stream/0": 4}),
    ).snapshot(T0 / 1000)
    text = prometheus_text(snap)
    assert 'instance="h\\"q\\\\x\\ny"' in text
    types, samples = parse_prometheus(text)
    assert types == {
        "millstream_records_in_total": "counter", "millstream_records_out_total": "counter",
        "millstream_errors_total": "counter", "millstream_retries_total": "counter",
        "millstream_exceptions_total": "counter", "millstream_up": "gauge",
        "millstream_stalled": "gauge", "millstream_lag": "gauge",
        "millstream_processing_seconds": "summary",
    }
    a = {"app": "shop", "service": "billing", "group": "shop.billing", "instance": "a"}
    w = {**a, "instance": weird}
    s = {"app": "shop", "service": "stuck", "group": "shop.stuck", "instance": "h:1"}
    expected = {
        ("millstream_records_in_total", lset(**a)): "5000",
        ("millstream_records_out_total", lset(**a)): "4500",
        ("millstream_errors_total", lset(**a)): "7",
        ("millstream_retries_total", lset(**a)): "4",
        ("millstream_exceptions_total", lset(**a)): "3",
        ("millstream_records_in_total", lset(**w)): "1",
        ("millstream_up", lset(**a)): "1",
        ("millstream_up", lset(**w)): "0",
        ("millstream_up", lset(**s)): "1",
        ("millstream_stalled", lset(app="shop", service="billing", group="shop.billing")): "0",
        ("millstream_stalled", lset(app="shop", service="stuck", group="shop.stuck")): "1",
        ("millstream_lag", lset(group="shop.billing", stream="orders", partition="0")): "5",
        ("millstream_lag", lset(group="shop.billing", stream="orders", partition="1")): "7",
        ("millstream_lag", lset(group="shop.stuck", stream="my/stream", partition="0")): "4",
        ("millstream_processing_seconds", lset(**a, quantile="0.5")): "1e-05",
        ("millstream_processing_seconds", lset(**a, quantile="0.9")): "1e-05",
        ("millstream_processing_seconds", lset(**a, quantile="0.99")): "3e-05",
        ("millstream_processing_seconds_count", lset(**a)): "104",
        ("millstream_processing_seconds_sum", lset(**a)): "0.001228",
        ("millstream_processing_seconds", lset(**s, quantile="0.5")): "NaN",
        ("millstream_processing_seconds_count", lset(**s)): "0",
    }
    for key, value in expected.items():
        assert samples[key] == value, key
    # 3 instances × (5 counters + up + 3 quantiles + count + sum), 2 services, 3 partitions
    assert len(samples) == 3 * 11 + 2 + 3


# -- on the embedded log ------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def write(streams: Streams, docs: Iterable[MetricsRecord]) -> None:
    streams.admin().ensure_stream(METRICS, 1)
    with streams.open_producer() as producer:
        for d in sorted(docs, key=lambda d: d.time_ms):
            producer.send(METRICS, d.to_json(), key=d.group.encode(), timestamp=d.time_ms)


def fleet(now: int) -> list[MetricsRecord]:
    """Five services: running (2 instances), stalled, idle, silent and stopped."""
    return [
        doc(instance="a", time_ms=now - 1000, interval_ms=5000,
            interval={"in": 500, "out": 450, "errors": 2, "exceptions": 1},
            totals={"in": 5000, "errors": 7, "exceptions": 3},
            lag={"orders/0": 5, "orders/1": 7}, values=[10] * 90),
        doc(instance="b", time_ms=now - 1000, interval_ms=2000,
            interval={"in": 300, "out": 300}, totals={"in": 900, "errors": 1},
            lag={"orders/2": 11}, values=[30] * 10),
        doc(group="shop.stuck", time_ms=now - 6000, lag={"orders/0": 10}),
        doc(group="shop.stuck", time_ms=now - 1000, lag={"orders/0": 15}),
        doc(group="shop.idle", time_ms=now - 6000, lag={"orders/0": 0}),
        doc(group="shop.idle", time_ms=now - 1000, lag={"orders/0": 0}),
        doc(group="shop.gone", time_ms=now - 60_000, lag={"orders/0": 4}),
        doc(group="shop.done", time_ms=now - 2000, interval_ms=30, final=True,
            totals={"in": 70, "errors": 2}),
        doc(group="video-staging.transcode.shadow.candidate-2", time_ms=now - 1000,
            interval={"in": 12}, lag={"uploads/0": 1234567}, values=[1_234_567]),
    ]


def invoke(command: Any, *args: str) -> Result:
    result = CliRunner().invoke(command, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


FLEET_AT_80 = [
    "Service          Up   In/s  p50 ms  p99 ms  Errors  Exceptions      Lag  Status",
    "shop.billing      2  250.0   0.010   0.030     2/8         1/3       23  running",
    "shop.done         0    0.0       -       -     0/2         0/0        0  stopped",
    "shop.gone         0    0.0       -       -     0/0         0/0        4  silent",
    "shop.idle         1    0.0       -       -     0/0         0/0        0  running",
    "shop.stuck        1    0.0       -       -     0/0         0/0       15  stalled",
    "vide…andidate-2   1    2.4  1234.6  1234.6     0/0         0/0  1234567  running",
]


def test_top_once_fits_80_columns_shortening_long_names_in_the_middle() -> None:
    with millstream.open_streams() as streams:
        write(streams, fleet(now_ms()))
    lines = invoke(top_command, "--once", "--width", "80").stdout.splitlines()
    assert lines == FLEET_AT_80
    assert max(map(len, lines)) == 80
    # piped without --width: as wide as the names, nothing cut
    out = invoke(top_command, "--once").stdout
    assert row(out, "video-staging.transcode.shadow.candidate-2") == [
        "video-staging.transcode.shadow.candidate-2", "1", "2.4", "1234.6", "1234.6", "0/0",
        "0/0", "1234567", "running"]
    assert [r[0] for r in rows(out)] == ["Service", "shop.billing", "shop.done", "shop.gone",
                                         "shop.idle", "shop.stuck",
                                         "video-staging.transcode.shadow.candidate-2"]

    # --since reads only the records written since then: the silent service's is older
    out = invoke(top_command, "--once", "--since", "30s").stdout
    assert [r[0] for r in rows(out)[1:]] == ["shop.billing", "shop.done", "shop.idle",
                                             "shop.stuck",
                                             "video-staging.transcode.shadow.candidate-2"]


def test_shorten_keeps_the_start_and_the_end_of_a_name() -> None:
    from millstream.cli.top import shorten

    assert shorten("videosite.transcode", 19) == "videosite.transcode"
    assert shorten("videosite.transcode", 15) == "vide….transcode"
    assert shorten("video-staging.transcode.shadow.candidate-2", 24) == (
        "video-s…adow.candidate-2")


def test_top_piped_prints_plain_rows_each_refresh_as_top_b_does() -> None:
    with millstream.open_streams() as streams:
        write(streams, fleet(now_ms()))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "millstream", "top", "-n", "2", "--width",
                           "80"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    heading = re.compile(r"millstream top \d\d:\d\d:\d\d, 6 services, metrics of the last 10m")
    assert [bool(heading.fullmatch(line)) for line in (lines[0], lines[9])] == [True, True]
    assert lines == [lines[0], *FLEET_AT_80, "", lines[9], *FLEET_AT_80, ""]
    assert took >= 1.0  # a refresh a second


def test_top_without_metrics_says_so() -> None:
    result = CliRunner().invoke(top_command, ["--once"])
    assert isinstance(result.exception, NotFoundError)
    assert "no metrics yet" in str(result.exception)
    with millstream.open_streams() as streams:
        streams.admin().ensure_stream(METRICS, 1)
    result = invoke(top_command, "--once")
    assert result.stdout == ""
    assert result.stderr == "no service metrics in the last 10m\n"


@pytest.mark.parametrize(("since", "expected"), [("10m", 600_000), ("90s", 90_000),
                                                 ("1.5s", 1500), ("2h", 7_200_000),
                                                 ("1d", 86_400_000), ("250ms", 250),
                                                 ("45", 45_000), ("all", None)])
def test_since_durations(since: str, expected: int | None) -> None:
    from millstream.cli.top import DurationParam

    assert DurationParam().convert(since, None, None) == expected


def test_since_rejects_what_is_not_a_duration() -> None:
    result = CliRunner().invoke(top_command, ["--once", "--since", "ten minutes"])
    assert result.exit_code == 2
    assert "'ten minutes' is not a duration" in result.output


def test_metrics_prometheus_prints_the_text_of_the_stream() -> None:
    with millstream.open_streams() as streams:
        write(streams, fleet(now_ms()))
    _, samples = parse_prometheus(invoke(metrics_group, "prometheus").stdout)
    a = {"app": "shop", "service": "billing", "group": "shop.billing", "instance": "a"}
    assert samples["millstream_records_in_total", lset(**a)] == "5000"
    assert samples["millstream_lag", lset(group="shop.billing", stream="orders",
                                       partition="2")] == "11"
    gone = {"app": "shop", "service": "gone", "group": "shop.gone", "instance": "h:1"}
    assert samples["millstream_up", lset(**gone)] == "0"
    assert samples["millstream_stalled", lset(app="shop", service="stuck",
                                           group="shop.stuck")] == "1"


class Order(BaseModel):
    id: int


def failing_app() -> App:
    app = App("shop", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Order},
                 retry=RetryPolicy(attempts=1))
    def billing(order: Order) -> Order:
        if order.id % 2:
            raise ValueError(f"order {order.id} is odd")
        return order

    return app


def send(streams: Streams, ids: range) -> None:
    with streams.open_producer() as producer:
        for i in ids:
            value, headers = ModelCodec(Order).encode(Order(id=i))
            producer.send("orders", value, key=str(i).encode(), headers=headers)


def run_instances(app: App, instances: list[int], records: int) -> None:
    """Run ``instances`` of billing in threads, each with a streams handle of its own, until
    they handled ``records`` together; then stop each cleanly."""
    handles = [millstream.open_streams() for _ in instances]
    runners = [ServiceRunner(app, "billing", h, metrics_interval_s=60, instance=i)
               for h, i in zip(handles, instances, strict=True)]
    runners[0].prepare()
    threads = [threading.Thread(target=r.run) for r in runners]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while (sum(r.metrics.records_in for r in runners) < records
           and time.monotonic() < deadline):
        time.sleep(0.01)
    for runner in runners:
        runner.stop()
    for thread in threads:
        thread.join(30)
    for handle in handles:
        handle.close()
    assert sum(r.metrics.records_in for r in runners) == records


def test_totals_add_up_every_instance_and_every_run_of_real_services() -> None:
    app = failing_app()
    with millstream.open_streams() as streams:
        streams.admin().ensure_stream("orders", 2)
        send(streams, range(10))
        run_instances(app, [0], 10)          # a first run: 5 records given up on
        send(streams, range(10, 30))
        run_instances(app, [0, 1], 20)       # run again, with a second instance: 10
    lines = invoke(top_command, "--once", "--width", "80").stdout.splitlines()
    assert lines == [
        "Service       Up  In/s  p50 ms  p99 ms  Errors  Exceptions  Lag  Status",
        "shop.billing   0   0.0       -       -    0/15        0/15    0  stopped",
    ]
    # Prometheus: one series per instance label, the newest run's counters
    _, samples = parse_prometheus(invoke(metrics_group, "prometheus").stdout)
    ins = sorted(int(v) for (name, _), v in samples.items()
                 if name == "millstream_records_in_total")
    assert len(ins) == 2 and sum(ins) == 20


@pytest.mark.multiprocess
def test_a_clean_stop_after_a_killed_run_shows_stopped_not_silent(tmp_path: Path) -> None:
    with millstream.open_streams(STREAMS_URL) as streams:
        produce_items(streams)
        # a run dies at a named fault point (no final metrics record), a second one
        # finishes the work and stops cleanly
        crash("double", "service.commit.after_flush:8", tmp_path / "crash.out",
              extra_env={"MILLSTREAM_TEST_DELAY_MS": "3"})
        runner = ServiceRunner(testapp, "double", streams, metrics_interval_s=60)
        runner.run(until=lambda r: committed(streams, "testapp.double") >= N)
        # a minute later by the view's clock the killed run is long silent
        later = now_ms() + 60_000
        with MetricsView(streams, since=None, now=lambda: later / 1000) as view:
            view.refresh(timeout=1.0)
            snap = view.snapshot()
    double = snap.get("testapp.double")
    killed = [i for i in double.instances if i.status == "silent"]
    assert sorted(i.status for i in double.instances) == ["silent", "stopped"]
    assert killed[0].totals.records_in > 0  # it wrote metrics before it died
    assert (double.status, double.silent, double.totals.records_in) == (
        "stopped", False, killed[0].totals.records_in + runner.metrics.records_in)
    assert render_lines(snap, 80)[1].split() == [
        "testapp.double", "0", "0.0", "-", "-", "0/0", "0/0", "0", "stopped"]


# -- metrics serve ------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, Streams, list[int]]]:
    """A metrics server on an ephemeral port over the embedded log, with a settable clock."""
    clock = [now_ms()]
    with millstream.open_streams() as streams:
        write(streams, fleet(clock[0]))
        with MetricsView(streams, now=lambda: clock[0] / 1000) as view:
            srv = MetricsServer(view, "127.0.0.1", 0)
            thread = threading.Thread(target=srv.serve_forever, daemon=True)
            thread.start()
            try:
                yield srv, streams, clock
            finally:
                srv.shutdown()
                srv.server_close()
                thread.join(10)


def test_serve_answers_metrics_in_the_text_format(
        server: tuple[MetricsServer, Streams, list[int]]) -> None:
    srv, streams, clock = server
    url = f"http://127.0.0.1:{srv.port}/metrics"
    status, content_type, body = fetch(url)
    assert (status, content_type) == (200, "text/plain; version=0.0.4") == (200, CONTENT_TYPE)
    idle = {"app": "shop", "service": "idle", "group": "shop.idle", "instance": "h:1"}
    _, samples = parse_prometheus(body)
    assert samples["millstream_up", lset(**idle)] == "1"
    assert samples["millstream_records_in_total", lset(**idle)] == "0"
    assert body == prometheus_text(srv.view.snapshot())

    # each scrape reads what arrived, and uses the view's clock
    write(streams, [doc(group="shop.idle", time_ms=clock[0] + 100, totals={"in": 12},
                        lag={"orders/0": 0})])
    clock[0] += 60_000
    _, samples = parse_prometheus(fetch(url)[2])
    assert samples["millstream_records_in_total", lset(**idle)] == "12"
    assert samples["millstream_up", lset(**idle)] == "0"  # silent by now

    status, _, body = fetch(f"http://127.0.0.1:{srv.port}/other")
    assert status == 404


def test_metrics_serve_command_listens_on_the_port_it_prints() -> None:
    with millstream.open_streams() as streams:
        write(streams, fleet(now_ms()))
    code = ("import sys; from millstream.cli.top import metrics_group; "
            "metrics_group(['serve', '--port', '0'])")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.fullmatch(r"serving metrics at (http://127\.0\.0\.1:\d+/metrics) "
                             r"\(Ctrl-C stops\)\n", line)
        assert match is not None, line
        status, content_type, body = fetch(match.group(1))
        assert (status, content_type) == (200, "text/plain; version=0.0.4")
        _, samples = parse_prometheus(body)
        a = {"app": "shop", "service": "billing", "group": "shop.billing", "instance": "a"}
        assert samples["millstream_errors_total", lset(**a)] == "7"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
