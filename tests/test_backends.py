"""One table of backends (``millstream._backends``): every scheme the unknown-scheme error
lists opens, works and checks, through ``open_streams``/``open_files``/``open_tables`` and
``check_streams``/``check_files``/``check_tables`` (what ``millstream doctor`` runs).

Kafka, S3 and PostgreSQL are the servers the suite starts; run with
``MILLSTREAM_REQUIRE_SERVICES=1`` to be sure none was skipped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from millstream import ConfigError, open_files, open_streams, open_tables
from millstream._backends import FAMILIES
from millstream.files import check_files
from millstream.streams import check_streams
from millstream.tables import check_tables
from tests.support.s3_fixtures import BUCKET, S3Target

#: a URL and options for a scheme, from the suite's servers (``request``) and a directory
Target = Callable[[pytest.FixtureRequest, Path], tuple[str, dict[str, Any] | None]]


def _kafka(request: pytest.FixtureRequest, tmp: Path) -> tuple[str, dict[str, Any] | None]:
    return f"kafka://{request.getfixturevalue('kafka_bootstrap')}", None


def _s3(scheme: str) -> Target:
    def target(request: pytest.FixtureRequest, tmp: Path) -> tuple[str, dict[str, Any]]:
        s3: S3Target = request.getfixturevalue("s3_url")
        return s3.child().replace("s3://", f"{scheme}://", 1), s3.options
    return target


def _postgres(scheme: str) -> Target:
    def target(request: pytest.FixtureRequest, tmp: Path) -> tuple[str, None]:
        url: str = request.getfixturevalue("pg_url")
        return url.replace("postgresql://", f"{scheme}://", 1), None
    return target


#: every scheme of every family, and where the suite has one
TARGETS: dict[str, dict[str, Target]] = {
    "streams": {
        "local": lambda request, tmp: (f"local:{tmp / 'log'}", None),
        "kafka": _kafka,
    },
    "files": {
        "file": lambda request, tmp: ((tmp / "files").as_uri(), None),
        "s3": _s3("s3"),
        "s3a": _s3("s3a"),
        # any other scheme goes to fsspec
        "memory": lambda request, tmp: (f"memory://backends-{uuid.uuid4().hex[:8]}", None),
    },
    "tables": {
        "sqlite": lambda request, tmp: ("sqlite:///" + str(tmp / "tables.db").lstrip("/"), None),
        "postgresql": _postgres("postgresql"),
        "postgres": _postgres("postgres"),
    },
}
_BAD = {"streams": open_streams, "files": open_files, "tables": open_tables}


def _listed(family: str) -> tuple[list[str], bool]:
    """The schemes the family's error lists for a URL of no known scheme, and whether it says
    any other fsspec protocol is taken too."""
    with pytest.raises(ConfigError) as info:
        _BAD[family]("nats:broker" if family != "files" else "/not/a/url")
    message = str(info.value)
    match = re.search(r"; supported: (.*?) \(for example (.*)\)$", message)
    assert match, message
    return re.findall(r"([a-z0-9]+):", match.group(1)), "any other fsspec protocol" in message


@pytest.mark.parametrize("family", TARGETS)
def test_the_error_lists_every_scheme_of_the_family_and_each_is_tested_here(family: str) -> None:
    schemes, fsspec = _listed(family)
    assert schemes == list(FAMILIES[family].schemes)
    assert fsspec is (family == "files")
    assert sorted(TARGETS[family]) == sorted(schemes + (["memory"] if fsspec else []))


@pytest.mark.parametrize("scheme", [
    pytest.param(scheme, marks=pytest.mark.kafka) if scheme == "kafka" else scheme
    for scheme in TARGETS["streams"]])  # marked: runs with the Kafka tests (make test's parts)
def test_every_streams_scheme_opens_and_checks(scheme: str, request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    url, options = TARGETS["streams"][scheme](request, tmp_path)
    name = f"backends-{uuid.uuid4().hex[:8]}"
    with open_streams(url, options=options) as streams:
        streams.admin().create_stream(name, partitions=2)
        with streams.open_producer() as producer:
            position = producer.send(name, b"probe", key=b"k").wait()
        assert position.stream == name and position.offset == 0
        count = len(streams.admin().list_streams())
    assert count >= 1
    assert check_streams(url, options=options).endswith(f", {count} stream(s)")


@pytest.mark.parametrize("scheme", TARGETS["files"])
def test_every_files_scheme_opens_and_checks(scheme: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    url, options = TARGETS["files"][scheme](request, tmp_path)
    store = open_files(url, options=options)
    try:
        ref = store.put("probe.txt", b"hello")
        assert (ref.size, store.read_bytes(ref)) == (5, b"hello")
        assert [r.url for r in store.list()] == [ref.url]
    finally:
        store.close()
    found = check_files(url, options=options)
    expected = {
        "file": f"directory {tmp_path / 'files'} is writable",
        "memory": f"{store.url} lists, objects",
    }.get(scheme, f"bucket {BUCKET!r}")
    assert found.startswith(expected), found


@pytest.mark.parametrize("scheme", TARGETS["tables"])
def test_every_tables_scheme_opens_and_checks(scheme: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    url, _ = TARGETS["tables"][scheme](request, tmp_path)
    name = f"backends_{uuid.uuid4().hex[:8]}"
    with open_tables(url) as tables:
        tables.create_table(name).put("k", {"n": 1})
        assert tables.table(name).get("k") == {"n": 1}
        count = len(tables.list_tables())
    found = check_tables(url)
    if scheme == "sqlite":
        assert re.fullmatch(rf"database {re.escape(str(tmp_path / 'tables.db'))} \(.+\) opens",
                            found), found
    else:
        assert found.endswith(f": {count} table(s)"), found
