"""A real PostgreSQL for the tests, started from the Debian binaries in a temporary directory.

``pg_server`` (session) starts one cluster the first time a test asks for it: ``initdb -A
trust`` and ``pg_ctl start`` with its own socket directory and a free port on 127.0.0.1 —
run as the ``postgres`` user when the tests run as root, since both refuse root. It is stopped
by its data directory at the end of the session. ``pg_url`` gives each test a database of its
own. Without the binaries the tests skip with the reason (fail under
MILLSTREAM_REQUIRE_SERVICES=1). ``MILLSTREAM_TEST_POSTGRES_URL`` uses a server you run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["PgCluster", "find_pg_bin", "pg_server", "pg_url"]


def _no_service(reason: str) -> NoReturn:
    from tests.support.platform_fixtures import _no_service as no_service

    no_service(reason)


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One throw-away PostgreSQL cluster in ``base`` (data, socket and log inside it)."""

    def __init__(self, bin_dir: Path, base: Path) -> None:
        self.bin = bin_dir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.base, check=False)

    def start(self) -> None:
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                         "-U", "postgres", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        options = (f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                         "-w", "-t", "60", "-o", options, "start")
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop", timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a running PostgreSQL (its ``postgres`` database, user ``postgres``)."""
    from tests.support.platform_fixtures import skip_if_services_off

    skip_if_services_off("PostgreSQL")
    external = os.environ.get("MILLSTREAM_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _no_service("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in "
                    "/usr/lib/postgresql/*/bin; install the postgresql package")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _no_service("running as root and there is no postgres user to run initdb as")
    cluster = PgCluster(bin_dir, Path(tempfile.mkdtemp(prefix="millstream-pg-")))
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        _no_service(f"could not start PostgreSQL from {bin_dir}: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database of its own for one test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return pg_server.rsplit("/", 1)[0] + "/" + name
