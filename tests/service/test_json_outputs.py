"""A service with one JSON (``dict``) output: a ``dict`` its handler returns is one record,
written as ``json.dumps`` writes it, with the input's key and the JSON content type (plus the
writer header where another service writes the stream too); a value that is not JSON goes to
the exceptions stream, naming why, and the records after it go on."""

from __future__ import annotations

import datetime
import json
from typing import Any

import millstream
from millstream._wellknown import EXCEPTIONS, WRITER_HEADER
from millstream.codecs import CONTENT_TYPE, JSON
from millstream.runtime import ServiceRunner
from millstream.runtime._failures import parse_exception
from millstream.service import App
from tests.service.test_runtime import read_all, run_until


def test_a_dict_result_is_one_json_record_and_a_value_that_is_not_json_is_reported() -> None:
    app = App("shop")

    @app.service(inputs={"events": dict}, outputs={"out": dict})
    def tag(event: dict[str, Any]) -> Any:
        if event["n"] == 2:
            return {"n": 2, "at": datetime.date(2026, 1, 1)}  # not JSON
        return {**event, "tagged": True, "é": [1.5, None, "x"]}

    @app.service(inputs={"other": dict}, outputs={"out": dict})
    def other(event: dict[str, Any]) -> dict[str, Any]:  # a second writer of "out"
        return event

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "tag", streams, metrics_interval_s=60)
        runner.prepare()
        with streams.open_producer() as producer:
            for n in range(4):
                producer.send("events", json.dumps({"n": n}).encode(), key=b"k%d" % n,
                              headers=((CONTENT_TYPE, JSON.encode()),))
        run_until(runner, lambda r: r.metrics.records_in >= 4)

        out = read_all(streams, "out")
        assert sorted((r.key, json.loads(r.value or b"")) for r in out) == [
            (b"k%d" % n, {"n": n, "tagged": True, "é": [1.5, None, "x"]}) for n in (0, 1, 3)]
        (first,) = [r for r in out if r.key == b"k0"]
        assert first.value == json.dumps({"n": 0, "tagged": True, "é": [1.5, None, "x"]},
                                          separators=(",", ":"), ensure_ascii=False).encode()
        assert {r.headers for r in out} == {
            ((CONTENT_TYPE, JSON.encode()), (WRITER_HEADER, b"tag"))}
        (failure,) = [parse_exception(r) for r in read_all(streams, EXCEPTIONS)]
        assert failure.document["stage"] == "encode"
        assert "cannot be written as JSON" in failure.message
        assert "date is not JSON serializable" in failure.message
