"""`millstream doctor` against the real servers the suite starts: S3Proxy, PostgreSQL, Kafka.

For each backend: OK on valid settings, and the exact line it prints for wrong credentials, a
missing bucket or database, and a port nothing listens on — each naming the fix — with exit
status 1 whenever a check fails.
"""

from __future__ import annotations

import re
import socket
import uuid

import pytest

from millstream.files import open_files
from tests.cli.conftest import Invoke
from tests.cli.parsing import row
from tests.support.s3_fixtures import BUCKET, KEY, SECRET, S3Target


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _s3(url: str, endpoint: str, key: str = KEY, secret: str = SECRET) -> str:
    return f"{url}?endpoint_url={endpoint}&key={key}&secret={secret}"


def _doctor(run: Invoke, code: int) -> str:
    out = run("doctor", code=code).stdout
    if code:
        assert re.fullmatch(r"\d check\(s\) failed \(.*\); fix them and run millstream doctor "
                            r"again", out.splitlines()[-1])
    else:
        assert out.splitlines()[-1] == "all backends OK"
    return out


# -- S3 -------------------------------------------------------------------------------------

def test_doctor_passes_valid_s3_settings_and_hides_the_secret(
        run: Invoke, s3_url: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3_url.child()
    monkeypatch.setenv("MILLSTREAM_FILES", _s3(url, s3_url.endpoint))
    # the check writes a probe under millstream.gc/: S3Proxy implements no default checksums
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    out = _doctor(run, 0)
    assert row(out, "files") == [
        "files", f"{url}?endpoint_url={s3_url.endpoint}&key=***&secret=***", "OK",
        f"bucket {BUCKET!r} at {s3_url.endpoint} answers, credentials accepted, no objects yet,"
        " millstream.gc/ usable"]
    assert SECRET not in out
    # the pin area's permissions were tried on a probe object, removed at once
    assert list(open_files(url, options=s3_url.options).list()) == []


def test_doctor_names_a_wrong_s3_secret_and_what_to_check(
        run: Invoke, s3_url: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3_url.child()
    monkeypatch.setenv("MILLSTREAM_FILES", _s3(url, s3_url.endpoint, secret="not-the-secret"))
    out = _doctor(run, 1)
    assert row(out, "files")[2:] == [
        "FAIL",
        f"{url}: S3 at {s3_url.endpoint} refused the credentials while listing bucket "
        f"{BUCKET!r} (SignatureDoesNotMatch: Forbidden); check the key and secret (the "
        "key/secret options, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and that they may "
        "use the bucket"]
    assert row(out, "streams")[2] == "OK" and row(out, "tables")[2] == "OK"


def test_doctor_names_a_missing_bucket_and_how_to_create_it(
        run: Invoke, s3_url: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MILLSTREAM_FILES", _s3(f"s3://{bucket}/videos", s3_url.endpoint))
    out = _doctor(run, 1)
    assert row(out, "files")[2:] == [
        "FAIL",
        f"bucket {bucket!r} does not exist at {s3_url.endpoint}: create it (aws s3 mb "
        f"s3://{bucket} --endpoint-url {s3_url.endpoint}) or point MILLSTREAM_FILES at an "
        "existing bucket"]


def test_doctor_names_an_s3_endpoint_that_does_not_answer(
        run: Invoke, s3_url: S3Target, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    url = s3_url.child()
    monkeypatch.setenv("MILLSTREAM_FILES", _s3(url, endpoint))
    out = _doctor(run, 1)
    assert row(out, "files")[2:] == [
        "FAIL",
        f"{url}: S3 at {endpoint} did not serve the request while listing bucket {BUCKET!r} "
        "(EndpointConnectionError); try again, and check that the endpoint is up and "
        "reachable"]


# -- PostgreSQL -------------------------------------------------------------------------------

def _pg_parts(pg_url: str) -> tuple[str, str]:
    """(host:port, database) of a pg_url."""
    host_port, database = pg_url.rsplit("@", 1)[1].split("/", 1)
    return host_port, database


def test_doctor_passes_a_valid_postgresql_database_before_and_after_first_use(
        run: Invoke, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import millstream.tables

    host_port, database = _pg_parts(pg_url)
    monkeypatch.setenv("MILLSTREAM_TABLES", pg_url)
    out = _doctor(run, 0)
    assert row(out, "tables") == [
        "tables", pg_url, "OK",
        f"database {database!r} at {host_port} as 'postgres': the schema will be created on "
        "first use"]
    with millstream.tables.open_tables(pg_url) as tables:
        tables.create_table("videos")
    assert row(_doctor(run, 0), "tables")[2:] == [
        "OK", f"database {database!r} at {host_port} as 'postgres': 1 table(s)"]


def test_doctor_names_a_missing_database_and_how_to_create_it(
        run: Invoke, pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host_port, _ = _pg_parts(pg_server)
    host, port = host_port.split(":")
    monkeypatch.setenv("MILLSTREAM_TABLES", f"postgresql://postgres@{host_port}/nosuchdb")
    out = _doctor(run, 1)
    assert row(out, "tables")[2:] == [
        "FAIL",
        f"database 'nosuchdb' does not exist at {host}:{port}: create it (createdb -h {host} "
        f"-p {port} -U postgres nosuchdb) or point MILLSTREAM_TABLES at an existing database"]


def test_doctor_names_refused_postgresql_credentials(
        run: Invoke, pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host_port, _ = _pg_parts(pg_server)
    monkeypatch.setenv("MILLSTREAM_TABLES", f"postgresql://nobody:pw@{host_port}/postgres")
    out = _doctor(run, 1)
    assert row(out, "tables") == [
        "tables", f"postgresql://nobody:***@{host_port}/postgres", "FAIL",
        f"PostgreSQL at {host_port} refused the credentials (role \"nobody\" does not exist): "
        "check the user and password in MILLSTREAM_TABLES "
        "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE), PGPASSWORD or ~/.pgpass"]
    assert "pw" not in out.replace("password", "")


def test_doctor_names_a_postgresql_port_nothing_listens_on(
        run: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("MILLSTREAM_TABLES", f"postgresql://postgres@127.0.0.1:{port}/postgres")
    out = _doctor(run, 1)
    assert row(out, "tables")[2:] == [
        "FAIL",
        f"cannot connect to PostgreSQL at 127.0.0.1:{port} (connection failed: connection to "
        f"server at \"127.0.0.1\", port {port} failed: Connection refused Is the server "
        "running on that host and accepting TCP/IP connections?): check that the server is "
        "running and that MILLSTREAM_TABLES names its host and port"]


# -- Kafka ----------------------------------------------------------------------------------

def test_doctor_names_kafka_brokers_that_do_not_answer(run: Invoke) -> None:
    port = _closed_port()
    out = run("--streams", f"kafka://127.0.0.1:{port}?millstream.timeout_ms=2000", "doctor",
              code=1).stdout
    status, detail = row(out, "streams")[2:]
    assert status == "FAIL"
    assert detail.startswith(
        f"no Kafka broker answered at 127.0.0.1:{port} within 2 s: check that the brokers are "
        "up and that the streams URL names them (Kafka error while listing streams: "), detail


@pytest.mark.kafka
def test_doctor_passes_a_kafka_broker_that_answers(run: Invoke, kafka_bootstrap: str) -> None:
    out = run("--streams", f"kafka://{kafka_bootstrap}", "doctor").stdout
    status, detail = row(out, "streams")[2:]
    assert status == "OK"
    assert re.fullmatch(rf"brokers {re.escape(kafka_bootstrap)} answer, \d+ stream\(s\)", detail)
