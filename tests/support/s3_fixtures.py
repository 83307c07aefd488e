"""An S3-compatible server for the tests: S3Proxy (a real S3 API server, Java) on loopback.

``s3_url`` (session) starts it on first use and yields an ``S3Target``: a fresh
``s3://millstream-test/run-<uuid>`` URL, the storage options that reach it (endpoint, keys)
and ``child()`` for a fresh prefix per test. S3Proxy is Gaul's ``org.gaul:s3proxy`` from
Maven Central (the ``jar-with-dependencies``; ``mvn dependency:get`` fetches it once into
``~/.m2``, or set ``MILLSTREAM_S3PROXY_JAR``) with its ``filesystem`` provider in a temporary
directory. Without Java or the jar, the server is moto's (``moto.server.ThreadedMotoServer``,
an in-process fake of S3) — unless MILLSTREAM_REQUIRE_SERVICES=1, where that fails instead.
``MILLSTREAM_S3_SERVER=moto`` picks the fake on purpose.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

S3PROXY_VERSION = "2.1.0"
S3PROXY_ARTIFACT = f"org.gaul:s3proxy:{S3PROXY_VERSION}:jar:jar-with-dependencies"
BUCKET = "millstream-test"
KEY = "millstream-key"
SECRET = "millstream-secret"


class S3Unavailable(Exception):
    """The S3 test server cannot be started here; the message says why."""


@dataclass
class S3Target:
    """Where the tests' objects go: ``url`` (a prefix of its own), ``options`` for s3fs."""

    url: str
    options: dict[str, Any]
    server: str  # "s3proxy <version>" or "moto (a fake)"
    endpoint: str
    _n: list[int] = field(default_factory=lambda: [0])

    def child(self) -> str:
        """A fresh URL under ``url`` (one per test keeps tests apart)."""
        self._n[0] += 1
        return f"{self.url}/t{self._n[0]}-{uuid.uuid4().hex[:6]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_options(endpoint: str) -> dict[str, Any]:
    # botocore's default CRC checksums on every request are not implemented by S3Proxy (nor
    # by most S3-compatible servers); ask for them only where S3 requires them
    return {
        "key": KEY, "secret": SECRET, "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"request_checksum_calculation": "when_required",
                          "response_checksum_validation": "when_required"},
    }


def _find_jar() -> Path:
    given = os.environ.get("MILLSTREAM_S3PROXY_JAR")
    if given:
        if not Path(given).is_file():
            raise S3Unavailable(f"MILLSTREAM_S3PROXY_JAR={given} is not a file")
        return Path(given)
    jar = (Path.home() / ".m2/repository/org/gaul/s3proxy" / S3PROXY_VERSION
           / f"s3proxy-{S3PROXY_VERSION}-jar-with-dependencies.jar")
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise S3Unavailable("no S3Proxy jar in ~/.m2 and no mvn to fetch it")
    try:
        done = subprocess.run(
            [mvn, "-B", "-ntp", "-q", "dependency:get", f"-Dartifact={S3PROXY_ARTIFACT}",
             "-Dtransitive=false"], capture_output=True, text=True, timeout=240, check=False)
    except subprocess.TimeoutExpired as exc:
        raise S3Unavailable("fetching S3Proxy from Maven Central took over 240 s") from exc
    if done.returncode != 0 or not jar.is_file():
        raise S3Unavailable(f"mvn dependency:get {S3PROXY_ARTIFACT} failed: "
                            f"{(done.stdout + done.stderr)[-500:]}")
    return jar


class S3ProxyServer:
    """One S3Proxy process on a free loopback port, data in a temporary directory."""

    def __init__(self) -> None:
        if shutil.which("java") is None:
            raise S3Unavailable("no java on PATH (S3Proxy needs Java 17)")
        jar = _find_jar()
        self.dir = Path(tempfile.mkdtemp(prefix="millstream-s3proxy-"))
        (self.dir / "data").mkdir()
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        conf = self.dir / "s3proxy.conf"
        conf.write_text("\n".join([
            f"s3proxy.endpoint={self.endpoint}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={KEY}",
            f"s3proxy.credential={SECRET}",
            "jclouds.provider=filesystem",
            f"jclouds.filesystem.basedir={self.dir / 'data'}",
            "",
        ]))
        self.log = self.dir / "s3proxy.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["java", "-Xms64m", "-Xmx384m", "-jar", str(jar), "--properties", str(conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready(90.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise S3Unavailable(f"S3Proxy exited with {self.proc.returncode}: "
                                    f"{self.log.read_text(errors='replace')[-1500:]}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without credentials): ready
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise S3Unavailable(f"S3Proxy did not answer on {self.endpoint} within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class MotoServer:
    """moto's S3 fake, in a thread of this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        port = _free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.stop()


def _create_bucket(endpoint: str) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, region_name="us-east-1",
                          config=Config(**s3_options(endpoint)["config_kwargs"]))
    try:
        client.create_bucket(Bucket=BUCKET)
    finally:
        client.close()


_started: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the S3 server the session used, so a fake is never mistaken for the real one."""
    for line in _started:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def s3_url() -> Iterator[S3Target]:
    """An S3 prefix of this session's own on a local S3-compatible server (see module doc)."""
    from tests.support.platform_fixtures import _no_service, require_services, skip_if_services_off

    skip_if_services_off("S3 server")

    server: S3ProxyServer | MotoServer
    name: str
    try:
        if os.environ.get("MILLSTREAM_S3_SERVER") == "moto":
            raise S3Unavailable("MILLSTREAM_S3_SERVER=moto")
        server, name = S3ProxyServer(), f"s3proxy {S3PROXY_VERSION}"
    except S3Unavailable as exc:
        if require_services() and os.environ.get("MILLSTREAM_S3_SERVER") != "moto":
            _no_service(f"no S3Proxy: {exc}")
        try:
            server, name = MotoServer(), "moto (a fake)"
        except Exception as moto_exc:
            _no_service(f"no S3 test server: S3Proxy: {exc}; moto: {moto_exc}")
    try:
        _create_bucket(server.endpoint)
    except Exception as exc:
        server.stop()
        _no_service(f"S3 test server ({name}) refused to create a bucket: {exc}")
    _started.append(f"S3 test server: {name} at {server.endpoint}")
    yield S3Target(url=f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}",
                   options=s3_options(server.endpoint), server=name, endpoint=server.endpoint)
    server.stop()
