"""The metrics record: what the runtime writes to ``millstream.metrics`` reads back as the same
typed record; records written before it had a type (and older ones) still read; a record that
does not fit is refused with an error naming the field and the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from millstream.codecs import DecodeError, ModelCodec
from millstream.observe import MetricsTable
from millstream.records import StreamPartition
from millstream.runtime import (
    Counters,
    MetricsRecord,
    ProcessingSummary,
    ProcessingTotal,
    RecordedHistogram,
)
from millstream.runtime._metrics import Metrics
from millstream.testing import ManualClock

#: a record exactly as the runtime wrote it before the record had a type (and a format number)
WRITTEN_BEFORE = (
    '{"kind":"service","app":"shop","service":"billing","group":"shop.billing",'
    '"instance":"host-a:41","version":"3","run":"0a1b2c3d4e5f","time_ms":1764979200000,'
    '"started_ms":1764979140000,"interval_ms":5000,'
    '"totals":{"in":40,"out":38,"errors":2,"retries":1,"exceptions":1},'
    '"interval":{"in":10,"out":9,"errors":1,"retries":1,"exceptions":0},'
    '"processing":{"count":10,"mean_ms":0.024,"p50_ms":0.02,"p90_ms":0.03,"p99_ms":0.03,'
    '"max_ms":0.03},'
    '"histogram":{"buckets":{"20":6,"30":4},"count":10,"total_us":240,"max_us":30},'
    '"processing_total":{"count":40,"total_us":800},'
    '"lag":{"orders/0":6,"orders/1":0},"assigned":["orders/0","orders/1"],"final":false}'
)
#: the wire keys of a record, in the order the runtime writes them
WIRE_KEYS = ["format", "kind", "app", "service", "group", "instance", "run", "version",
             "time_ms", "started_ms", "interval_ms", "totals", "interval", "processing",
             "histogram", "processing_total", "lag", "assigned", "inputs", "outputs", "stores",
             "streams_in", "streams_out", "final"]
#: the fields added since, as a record without them reads (and is written again)
TOPOLOGY_DEFAULTS = {"inputs": [], "outputs": [], "stores": [], "streams_in": {},
                     "streams_out": {}}


def written_before() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(WRITTEN_BEFORE)
    return value


def test_a_record_written_before_the_type_existed_reads_field_for_field() -> None:
    record = MetricsRecord.parse(WRITTEN_BEFORE.encode())
    assert record == MetricsRecord(
        format=1, kind="service", app="shop", service="billing", group="shop.billing",
        instance="host-a:41", run="0a1b2c3d4e5f", version="3", time_ms=1_764_979_200_000,
        started_ms=1_764_979_140_000, interval_ms=5000,
        totals=Counters(records_in=40, records_out=38, errors=2, retries=1, exceptions=1),
        interval=Counters(records_in=10, records_out=9, errors=1, retries=1, exceptions=0),
        processing=ProcessingSummary(count=10, mean_ms=0.024, p50_ms=0.02, p90_ms=0.03,
                                     p99_ms=0.03, max_ms=0.03),
        histogram=RecordedHistogram(buckets={20: 6, 30: 4}, count=10, total_us=240,
                                    max_us=30),
        processing_total=ProcessingTotal(count=40, total_us=800),
        lag={"orders/0": 6, "orders/1": 0}, assigned=("orders/0", "orders/1"), final=False)
    assert record.histogram.histogram().percentile(0.5) == 20
    # the same object, already decoded (a JSON codec's value), reads the same
    assert MetricsRecord.parse(written_before()) == record
    # written again, it is the same object plus its format number and the fields added since
    assert record.to_dict() == {"format": 1, **written_before(), **TOPOLOGY_DEFAULTS}
    assert (record.inputs, record.outputs, record.stores, record.streams_in,
            record.streams_out) == ((), (), (), {}, {})
    assert list(record.to_dict()) == WIRE_KEYS


def test_an_older_record_without_run_or_processing_total_reads_with_defaults() -> None:
    older = written_before()
    del older["run"], older["processing_total"]
    record = MetricsRecord.parse(json.dumps(older))
    assert (record.run, record.processing_total, record.format) == ("", None, 1)
    # a reader then counts processing from the interval histograms it saw
    table = MetricsTable()
    assert table.add(record)
    assert table.add(record.model_copy(update={"time_ms": record.time_ms + 5000}))
    (inst,) = table.snapshot((record.time_ms + 5000) / 1000).get("shop.billing").instances
    assert (inst.processed_count, inst.processed_us) == (20, 480)


def test_only_group_instance_and_time_are_required() -> None:
    record = MetricsRecord.parse(b'{"group":"g","instance":"h:1","time_ms":5}')
    assert record == MetricsRecord(group="g", instance="h:1", time_ms=5)
    assert (record.kind, record.totals, record.lag, record.final) == (
        "service", Counters(), {}, False)
    # a counter a record leaves out is 0; a field this reader does not know is ignored
    partial = MetricsRecord.parse({**written_before(), "totals": {"in": 7}, "future": [1, 2]})
    assert partial.totals == Counters(records_in=7)


def test_what_the_runtime_writes_round_trips_through_the_stream_bytes() -> None:
    clock = ManualClock(1_764_979_140.0)
    metrics = Metrics("shop", "billing", "shop.billing", "3", clock=clock, instance=2,
                      inputs=["orders"], outputs=["invoices", "totals"],
                      stores=["files", "tables:totals"])
    metrics.record_batch([20_000] * 6 + [30_000] * 4, 1, 10,
                         {"orders": 8, "millstream.retry.shop.billing": 2})
    metrics.count_out("invoices", 6)
    metrics.count_out("totals", 2)
    metrics.count_out("invoices", 1)
    metrics.errors, metrics.retries = 1, 1
    metrics.lag = {StreamPartition("orders", 1): 0, StreamPartition("orders", 0): 6}
    metrics.assigned = [StreamPartition("orders", 0), StreamPartition("orders", 1)]
    clock.advance(5)
    # the runner sends snapshot() as JSON: the record's own JSON object
    assert metrics.snapshot(advance=False) == metrics.record(advance=False).to_dict()
    record = metrics.record()
    assert json.loads(record.to_json()) == record.to_dict()
    assert MetricsRecord.parse(record.to_json()) == record
    assert (record.group, record.instance.endswith("#2"), record.run) == (
        "shop.billing", True, metrics.run)
    assert (record.time_ms, record.started_ms, record.interval_ms) == (
        1_764_979_145_000, 1_764_979_140_000, 5000)
    assert record.totals == Counters(records_in=10, records_out=9, errors=1, retries=1)
    assert record.interval == record.totals
    assert record.histogram == RecordedHistogram(buckets={20: 6, 30: 4}, count=10,
                                                 total_us=240, max_us=30)
    assert record.processing_total == ProcessingTotal(count=10, total_us=240)
    assert (record.lag, record.assigned) == ({"orders/0": 6, "orders/1": 0},
                                             ("orders/0", "orders/1"))
    assert (record.inputs, record.outputs, record.stores) == (
        ("orders",), ("invoices", "totals"), ("files", "tables:totals"))
    assert (record.streams_in, record.streams_out) == (
        {"millstream.retry.shop.billing": 2, "orders": 8}, {"invoices": 7, "totals": 2})
    assert list(record.to_dict()) == WIRE_KEYS
    # the next record's interval starts after this one: the per-stream counts too
    metrics.count_in({"orders": 3})
    metrics.count_out("totals", 3)
    clock.advance(5)
    later = metrics.record(final=True)
    assert (later.interval, later.interval_ms, later.final) == (
        Counters(records_in=3, records_out=3), 5000, True)
    assert (later.streams_in, later.streams_out) == (
        {"millstream.retry.shop.billing": 0, "orders": 3}, {"invoices": 0, "totals": 3})
    assert (later.totals.records_in, later.totals.records_out) == (13, 12)
    assert later.processing_total == ProcessingTotal(count=10, total_us=240)


def test_a_service_reads_the_stream_typed_through_the_model_codec() -> None:
    codec = ModelCodec(MetricsRecord)
    record = codec.decode(WRITTEN_BEFORE.encode(), ())  # the runtime writes no headers
    assert record == MetricsRecord.parse(WRITTEN_BEFORE)
    value, headers = codec.encode(record)
    assert value is not None and json.loads(value) == record.to_dict()
    assert dict(headers)["schema"] == b"millstream.metrics"


@pytest.mark.parametrize(("change", "message"), [
    ({"time_ms": "soon"}, "field 'time_ms': Input should be a valid integer, unable to parse "
                          "string as an integer (found 'soon')"),
    ({"totals": {"in": "many"}}, "field 'totals.in': Input should be a valid integer, "
                                 "unable to parse string as an integer (found 'many')"),
    ({"instance": None}, "field 'instance': Input should be a valid string (found None)"),
    ({"lag": {"orders/0": -1.5}}, "field 'lag.orders/0': Input should be a valid integer, "
                                  "got a number with a fractional part (found -1.5)"),
    ({"kind": "materializer"}, "field 'kind': Input should be 'service' "
                               "(found 'materializer')"),
    ({"format": 2}, "field 'format': format 2 is newer than this millstream "
                    "reads (format 1); upgrade millstream where the stream is read (found 2)"),
])
def test_a_record_that_does_not_fit_names_the_field_and_the_value(
        change: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodeError) as refused:
        MetricsRecord.parse(json.dumps({**written_before(), **change}))
    assert str(refused.value) == f"not a millstream.metrics record: {message}"


def test_a_record_missing_what_is_required_or_not_json_is_refused_clearly() -> None:
    with pytest.raises(DecodeError) as refused:
        MetricsRecord.parse(b'{"group": "g"}')
    assert str(refused.value) == ("not a millstream.metrics record: field 'instance' is "
                                  "missing; field 'time_ms' is missing")
    with pytest.raises(DecodeError, match=r"^not a millstream\.metrics record: not JSON \("):
        MetricsRecord.parse(b"{not json")
    with pytest.raises(DecodeError, match="Input should be an object"):
        MetricsRecord.parse(b"[1, 2]")


def test_a_reader_skips_and_counts_records_it_cannot_read() -> None:
    table = MetricsTable()
    newer = json.dumps({**written_before(), "format": 2}).encode()
    assert not table.add_bytes(newer)
    assert not table.add_bytes(b'{"group": "g"}')
    assert table.add_bytes(WRITTEN_BEFORE.encode())
    assert table.skipped == 2
    assert table.snapshot(1_764_979_200_000 / 1000).get("shop.billing").totals.records_in == 40
