"""The headers millstream writes on records are exactly the ones docs/kafka.md names.

Two checks, so that neither side drifts silently: the table "Headers millstream writes" in
docs/kafka.md lists every header constant the code defines (found by reading the source), and
records written by the service runtime and the claim-check on the embedded log (the code that
makes headers is the same for every backend) carry the documented names and values.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

from pydantic import BaseModel

import millstream
from millstream.codecs import JSON, OCTET_STREAM
from millstream.files import ClaimCheck, open_files
from millstream.records import Record
from millstream.service import App, ServiceRunner
from millstream.streams.base import Streams

REPO = Path(__file__).resolve().parents[2]
SECTION = "### Headers millstream writes"


def documented() -> dict[str, str]:
    """Header name → the "value" column of its row, from docs/kafka.md."""
    text = (REPO / "docs/kafka.md").read_text()
    assert SECTION in text, f"docs/kafka.md has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[-1]
    return rows


def header_constants() -> dict[str, str]:
    """Every module-level ``*HEADER`` constant in src/millstream, and the codecs' header
    names: ``module.NAME`` → value."""
    found = {}
    for path in sorted((REPO / "src/millstream").rglob("*.py")):
        module = ".".join(path.relative_to(REPO / "src").with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                continue
            name = node.targets[0].id
            if name == "HEADER" or name.endswith("_HEADER") or (
                    module == "millstream.codecs"
                    and name in ("CONTENT_TYPE", "SCHEMA", "SCHEMA_VERSION")):
                found[f"{module}.{name}"] = node.value.value
    return found


def test_the_kafka_docs_list_every_header_constant_of_the_code() -> None:
    constants = header_constants()
    assert constants == {
        "millstream.codecs.CONTENT_TYPE": "content-type",
        "millstream.codecs.SCHEMA": "schema",
        "millstream.codecs.SCHEMA_VERSION": "schema-version",
        "millstream.files.claimcheck.HEADER": "millstream-claim-check",
        "millstream.service.runner.REPLAY_PARTITION_HEADER": "millstream-replay-partition",
        "millstream.service.runner.REPLAY_STREAM_HEADER": "millstream-replay-stream",
        "millstream.service.wellknown.REPLAY_HEADER": "millstream-replay-of",
        "millstream.service.wellknown.WRITER_HEADER": "millstream-writer",
    }
    assert sorted(documented()) == sorted(constants.values())


class Order(BaseModel):
    id: int


class Invoice(BaseModel):
    order_id: int


def _read(streams: Streams, stream: str, want: int) -> list[Record]:
    out: list[Record] = []
    with streams.open_consumer() as consumer:
        consumer.subscribe([stream])
        deadline = time.monotonic() + 10
        while len(out) < want and time.monotonic() < deadline:
            out += consumer.poll(max_records=100, timeout=0.2)
    assert len(out) == want, stream
    return out


def test_records_carry_the_documented_header_names_and_values(tmp_path: Path) -> None:
    docs = documented()
    app = App("shop")

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice})
    def billing(order: Order) -> Invoice:
        return Invoice(order_id=order.id)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice})
    def audit(order: Order) -> None:  # a second writer of "invoices"; never run here
        return None

    @app.service(inputs={"orders": Order}, outputs={"raw": bytes})
    def archive(order: Order) -> bytes:
        return b"order %d" % order.id

    @app.service(inputs={"orders": Order}, outputs={"docs": dict})
    def index(order: Order) -> dict[str, int]:
        return {"id": order.id}

    with millstream.open_streams() as streams:
        runners = [ServiceRunner(app, name, streams, metrics_interval_s=60)
                   for name in ("billing", "archive", "index")]
        for runner in runners:
            runner.prepare()
        with streams.open_producer() as producer:
            producer.send("orders", Order(id=7).model_dump_json().encode(), key=b"7",
                          headers=(("content-type", b"application/json"),
                                   ("schema", b"Order"), ("schema-version", b"1")))
        for runner in runners:
            runner.run(until=lambda r: r.metrics.records_in >= 1)

        (invoice,) = _read(streams, "invoices", 1)
        assert [name for name, _ in invoice.headers] == [
            "content-type", "schema", "schema-version", "millstream-writer"]
        assert all(name in docs for name, _ in invoice.headers)
        assert dict(invoice.headers) == {"content-type": JSON.encode(), "schema": b"Invoice",
                                         "schema-version": b"1",
                                         "millstream-writer": b"billing"}
        (raw,) = _read(streams, "raw", 1)
        assert raw.headers == (("content-type", OCTET_STREAM.encode()),)
        (doc,) = _read(streams, "docs", 1)
        assert doc.headers == (("content-type", JSON.encode()),)
        for kind in (JSON, OCTET_STREAM):
            assert f"`{kind}`" in docs["content-type"]

        streams.admin().create_stream("big", partitions=1)
        claim = ClaimCheck(open_files((tmp_path / "files").as_uri()), threshold_bytes=10)
        with claim.wrap_producer(streams.open_producer()) as producer:
            producer.send("big", b"x" * 100, headers=(("mine", b"kept"),)).wait(10)
        (big,) = _read(streams, "big", 1)
        assert big.headers == (("mine", b"kept"), ("millstream-claim-check", b"1"))
        assert re.match(r"`1`", docs["millstream-claim-check"])
