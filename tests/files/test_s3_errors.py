"""S3 failures keep their meaning, on the real S3 server the suite starts (S3Proxy).

A missing bucket or object is a ``NotFoundError`` and refused credentials a ``ConfigError``:
neither is retriable, so nothing retries them forever. Only an S3 that does not answer (here:
a stopped server, i.e. nothing listening on its port) is a retriable ``UnavailableError``.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest

from millstream import ConfigError, NotFoundError, UnavailableError
from millstream.files import open_files
from tests.support.s3_fixtures import S3Target


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _options(s3_url: S3Target, **changes: Any) -> dict[str, Any]:
    return {**s3_url.options, **changes}


def test_a_missing_bucket_is_not_found_and_says_how_to_create_it(s3_url: S3Target) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    with open_files(f"s3://{bucket}/videos", options=s3_url.options) as store:
        for call in (lambda: store.put("a.txt", b"abc"), lambda: list(store.list())):
            with pytest.raises(NotFoundError) as info:
                call()
            assert type(info.value) is NotFoundError
            assert not info.value.retriable
            assert str(info.value) == (
                f"bucket {bucket!r} does not exist at {s3_url.endpoint}: create it (aws s3 mb "
                f"s3://{bucket} --endpoint-url {s3_url.endpoint}) or point MILLSTREAM_FILES "
                "at an existing bucket")


def test_a_missing_object_is_not_found(s3_url: S3Target) -> None:
    with open_files(s3_url.child(), options=s3_url.options) as store:
        with pytest.raises(NotFoundError, match=r"no object 'nothing\.bin'") as info:
            store.read_bytes("nothing.bin")
        assert not info.value.retriable
        assert store.exists("nothing.bin") is False


@pytest.mark.parametrize("changes", [{"secret": "wrong-secret"}, {"key": "wrong-key"}],
                         ids=["wrong-secret", "wrong-key"])
def test_refused_credentials_are_a_config_error_that_names_what_to_check(
        s3_url: S3Target, changes: dict[str, str]) -> None:
    with open_files(s3_url.child(), options=_options(s3_url, **changes)) as store:
        for call in (lambda: store.put("a.txt", b"abc"), lambda: list(store.list()),
                     lambda: store.read_bytes("a.txt")):
            with pytest.raises(ConfigError) as info:
                call()
            assert not info.value.retriable
            text = str(info.value)
            assert f"S3 at {s3_url.endpoint} refused the credentials" in text
            assert "check the key and secret" in text


def test_a_stopped_server_is_unavailable_and_retriable_within_a_bound(
        s3_url: S3Target) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    options = _options(s3_url, endpoint_url=endpoint)
    with open_files(s3_url.child(), options=options) as store:
        for call in (lambda: store.put("a.txt", b"abc"), lambda: list(store.list())):
            t0 = time.monotonic()
            with pytest.raises(UnavailableError) as info:
                call()
            elapsed = time.monotonic() - t0
            assert info.value.retriable
            assert f"S3 at {endpoint} did not serve the request" in str(info.value)
            assert elapsed < 30, f"took {elapsed:.1f} s to fail"
            print(f"unreachable S3 failed after {elapsed:.1f} s")
