"""The headers millstream writes on records are exactly the ones docs/guides/kafka.md names.

Two checks, so that neither side drifts silently: the table "Headers millstream writes" in
docs/guides/kafka.md lists every header constant the code defines (found by reading the source), and
records written by the service runtime and the claim-check on the embedded log (the code that
makes headers is the same for every backend) carry the documented names and values.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

from click.testing import CliRunner
from pydantic import BaseModel

import millstream
from millstream._wellknown import EXCEPTIONS, retry_stream
from millstream.cli.main import cli
from millstream.codecs import JSON, OCTET_STREAM
from millstream.files import ClaimCheck, open_files
from millstream.records import Record
from millstream.runtime import ServiceRunner
from millstream.service import App, RetryPolicy
from millstream.streams._base import Streams

REPO = Path(__file__).resolve().parents[2]
SECTION = "### Headers millstream writes"


def documented() -> dict[str, str]:
    """Header name → the "value" column of its row, from docs/guides/kafka.md."""
    text = (REPO / "docs/guides/kafka.md").read_text()
    assert SECTION in text, f"docs/guides/kafka.md has no section {SECTION!r}"
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


#: Header-like literals in the source that are not record headers: HTTP headers of the
#: metrics endpoint `top` reads and of the console's requests (with the defaults of their
#: lookups), and the keys of a table snapshot's first line.
NOT_RECORD_HEADERS = {
    "src/millstream/observe/_prometheus.py": {"Content-Type", "Content-Length"},
    "src/millstream/tables/_snapshot.py": {"feed", "created_ms", "format", "version",
                                          "documents", "table", "offsets", "indexes", ""},
    "src/millstream/console/_app.py": {"accept", ""},
    "src/millstream/console/_security.py": {"authorization", "content-length", "origin",
                                            "referer", "sec-fetch-site", "same-origin", "",
                                            " "},
}


def _names_in_pairs(node: ast.AST) -> list[str]:
    """First elements of the ``("name", value)`` pairs anywhere inside ``node``."""
    return [pair.elts[0].value for pair in ast.walk(node)
            if isinstance(pair, ast.Tuple) and len(pair.elts) == 2
            and isinstance(pair.elts[0], ast.Constant) and isinstance(pair.elts[0].value, str)]


def literals_in(tree: ast.AST) -> set[str]:
    """Header names written as string literals in ``tree``: the first element of a
    ``("name", b"…")`` or ``("name", x.encode())`` pair, of any pair given as ``headers=`` or
    assigned to a name containing "header", a key of ``…headers[…]``, and a literal argument
    of a call whose name contains "header" (``header(record.headers, "name")``)."""
    hits: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            first, second = node.elts
            bytes_like = (isinstance(second, ast.Constant)
                          and isinstance(second.value, bytes)) or (
                isinstance(second, ast.Call) and isinstance(second.func, ast.Attribute)
                and second.func.attr == "encode")
            if bytes_like and isinstance(first, ast.Constant) and isinstance(first.value, str):
                hits.add(first.value)
        elif (isinstance(node, ast.keyword) and node.arg and "header" in node.arg) or (
                isinstance(node, ast.Assign)
                and any("header" in ast.unparse(t).lower() for t in node.targets)):
            hits.update(_names_in_pairs(node.value))
        elif (isinstance(node, ast.Subscript) and "header" in ast.unparse(node.value).lower()
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)):
            hits.add(node.slice.value)
        elif isinstance(node, ast.Call) and "header" in ast.unparse(node.func).lower():
            hits.update(a.value for a in node.args
                        if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return hits


def header_literals() -> dict[str, set[str]]:
    """``literals_in`` every module of src/millstream, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "src/millstream").rglob("*.py")):
        hits = literals_in(ast.parse(path.read_text()))
        if hits:
            found[str(path.relative_to(REPO))] = hits
    return found


def test_every_header_name_written_as_a_literal_in_the_source_is_documented() -> None:
    docs = set(documented())
    undocumented = {path: sorted(names - docs - NOT_RECORD_HEADERS.get(path, set()))
                    for path, names in header_literals().items()}
    assert {path: names for path, names in undocumented.items() if names} == {}
    # the scan sees every way code writes or reads a header by name
    sample = ast.parse('''
producer.send("s", v, headers=(("x-one", value),))
extra_headers = [("x-two", ident.encode())]
if header(record.headers, "x-three"): pass
meta = record.headers["x-four"]
out = (("x-five", b"1"),)
''')
    assert sorted(literals_in(sample)) == ["x-five", "x-four", "x-one", "x-three", "x-two"]


def test_the_kafka_docs_list_every_header_constant_of_the_code() -> None:
    constants = header_constants()
    assert constants == {
        "millstream.codecs.CONTENT_TYPE": "content-type",
        "millstream.codecs.SCHEMA": "schema",
        "millstream.codecs.SCHEMA_VERSION": "schema-version",
        "millstream.files._claimcheck.HEADER": "millstream-claim-check",
        "millstream.runtime._handling.REPLAY_PARTITION_HEADER": "millstream-replay-partition",
        "millstream.runtime._handling.REPLAY_STREAM_HEADER": "millstream-replay-stream",
        "millstream._wellknown.REPLAY_HEADER": "millstream-replay-of",
        "millstream._wellknown.WRITER_HEADER": "millstream-writer",
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


def test_a_replayed_record_carries_the_documented_replay_headers() -> None:
    docs = documented()
    app = App("shop", partitions=2)

    @app.service(inputs={"orders": Order}, outputs={"invoices": Invoice},
                 retry=RetryPolicy(attempts=1, backoff=0.001))
    def billing(order: Order) -> Invoice:
        raise KeyError(f"no tax rate for order {order.id}")

    with millstream.open_streams() as streams:
        runner = ServiceRunner(app, "billing", streams, metrics_interval_s=60)
        runner.prepare()
        sent = (("content-type", b"application/json"), ("schema", b"Order"),
                ("schema-version", b"1"))
        with streams.open_producer() as producer:
            producer.send("orders", Order(id=3).model_dump_json().encode(), key=b"3",
                          partition=1, headers=sent).wait(10)
        runner.run(until=lambda r: r.metrics.records_in >= 1)
        (failure,) = _read(streams, EXCEPTIONS, 1)

    out = CliRunner().invoke(cli, ["exceptions", "replay", str(failure.offset)])
    assert out.exit_code == 0, out.output
    with millstream.open_streams() as streams:
        (replayed,) = _read(streams, retry_stream("shop.billing"), 1)
    assert replayed.headers == (*sent,
                                ("millstream-replay-of", str(failure.offset).encode()),
                                ("millstream-replay-stream", b"orders"),
                                ("millstream-replay-partition", b"1"))
    assert replayed.value == Order(id=3).model_dump_json().encode()
    for name in ("millstream-replay-of", "millstream-replay-stream",
                 "millstream-replay-partition"):
        assert name in docs
    assert "id (offset) of the exception record" in docs["millstream-replay-of"]
    assert "input stream" in docs["millstream-replay-stream"]
    assert "partition" in docs["millstream-replay-partition"]
