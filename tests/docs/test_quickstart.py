"""docs/quickstart.md works as written.

Its files (the python blocks that start with ``# NAME.py``) are written to a project
directory, its test is run with the command the page gives, and the commands of "Run it"
are run as the page says — ``millstream up`` in the background until it says it is running,
then the other terminal's commands one by one, whose output must be what the page shows —
first on the embedded default, then on a real Kafka broker with the URL the page exports
(the broker is the suite's, started as the page's ``kafka_cluster start`` line starts one).
On Kafka the stream and app names get a suffix of their own, since the broker is shared
with other tests. The testing guide's Kafka test module (docs/guides/testing.md) is run the
same way, against the quickstart's ``shop.py``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

import millstream
from millstream.errors import UnknownStreamError
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "quickstart.md"
TESTING_GUIDE = REPO / "docs" / "guides" / "testing.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
HEAD = re.compile(r"^(\S+\[\d+\]@\d+)  key=(\S+)$")
COMMAND_TIMEOUT_S = 120


def blocks(info: str, page: Path = PAGE) -> list[str]:
    """The bodies of the page's fenced blocks with this info string, in order."""
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == info]


def one(info: str, contains: str) -> str:
    found = [body for body in blocks(info) if contains in body]
    assert len(found) == 1, f"docs/quickstart.md: {len(found)} {info} blocks hold {contains!r}"
    return found[0]


def files(page: Path = PAGE) -> dict[str, str]:
    """The project files a page writes: python blocks whose first line is ``# NAME.py``."""
    found = {}
    for body in blocks("python", page):
        first = body.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            found[first[2:]] = body
    return found


def printed_records(text: str) -> set[tuple[str, str, str]]:
    """``millstream tail``'s output as (position, key, value as sorted JSON) triples."""
    records, head, body = set(), None, []
    for line in [*text.splitlines(), "end[0]@0  key=end"]:
        match = HEAD.match(line)
        if match is None:
            body.append(line)
            continue
        if head is not None:
            records.add((*head, json.dumps(json.loads("\n".join(body)), sort_keys=True)))
        head, body = match.groups(), []
    assert records, f"no records in {text!r}"
    return records


def renamed(text: str, suffix: str, python: bool = False) -> str:
    """``text`` with the app's streams and the app itself named with ``suffix``: in python,
    the string literals that name them; in commands and their output, the words."""
    if not suffix:
        return text
    for name in ("orders", "invoices"):
        if python:
            text = text.replace(f'"{name}"', f'"{name}-{suffix}"')
        else:
            text = re.sub(rf"(?<![\w-]){name}(?![\w-])", f"{name}-{suffix}", text)
    return text.replace('App("shop"', f'App("shop{suffix}"')


def environment(streams_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COLUMNS"] = "200"
    if streams_url is not None:
        env["MILLSTREAM_STREAMS"] = streams_url
    return env


def run(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_project(folder: Path, suffix: str = "") -> Path:
    project = folder / "shop"
    project.mkdir()
    written = files()
    assert set(written) == {"shop.py", "test_shop.py", "send_orders.py"}, written.keys()
    for name, body in written.items():
        (project / name).write_text(renamed(body, suffix, python=True))
    return project


def run_it(project: Path, streams_url: str | None, suffix: str = "") -> None:
    """The section "Run it", on the streams ``streams_url`` (None: the embedded default)."""
    env = environment(streams_url)
    up = one("sh", "millstream up").strip()
    assert up == "millstream up shop:app"
    log = project / "up.log"
    with open(log, "wb") as out:
        supervisor = subprocess.Popen(shlex.split(up), cwd=project, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "running as group" in log.read_text(), 60, "the service to run")
        with millstream.open_streams(streams_url) as streams:
            def created() -> bool:
                try:
                    streams.admin().describe_stream(renamed("orders", suffix))
                except UnknownStreamError:
                    return False
                return True
            wait_until(created, 60, "the service to create its streams")
        send, tail, exceptions = renamed(one("sh", "python send_orders.py"), suffix).splitlines()
        assert run(send, project, env) == "sent 3 orders\n"
        printed = run(tail, project, env)
        expected = renamed(one("text", "key=ada"), suffix)
        assert printed_records(printed) == printed_records(expected)
        failures = run(exceptions, project, env)
        rows = [line for line in failures.splitlines()
                if renamed("orders", suffix) + "[" in line]
        assert len(rows) == 1, failures
        assert "ValueError: order 3 has a negative total: -1.0" in rows[0], failures
        assert re.search(r"\bhandle\b.*\b3\b", rows[0]), failures
    finally:
        supervisor.send_signal(signal.SIGINT)  # Ctrl-C, as the page says
        code = supervisor.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "billing stopped: 3 in, 2 out, 1 to exceptions" in text, text


def test_the_install_line_and_the_extras_table_name_the_extras_pyproject_defines() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["project"]["optional-dependencies"])
    install = one("sh", "pip install")
    named = re.search(r"pip install -e '\.\[([\w,]+)\]'", install)
    assert named is not None, install
    assert set(named.group(1).split(",")) <= extras
    text = PAGE.read_text()
    table = text.split("| extra | adds | for |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.M)) == extras


def test_the_quickstart_test_passes_with_the_command_the_page_gives(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    command = one("sh", "pytest test_shop.py").strip()
    assert command == "pytest test_shop.py"
    done = subprocess.run([sys.executable, "-m", *shlex.split(command), "-q",
                           "-p", "no:cacheprovider"], cwd=project, env=environment(None),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


@pytest.mark.multiprocess
def test_the_quickstart_service_runs_on_the_embedded_default(tmp_path: Path) -> None:
    run_it(write_project(tmp_path), None)


@pytest.mark.multiprocess
def test_the_same_service_runs_on_kafka_with_the_url_the_page_exports(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    export = one("sh", "export MILLSTREAM_STREAMS")
    assert "kafka://127.0.0.1:PORT" in export
    host, _, port = kafka_bootstrap.rpartition(":")
    check = export.replace("127.0.0.1:PORT", f"{host}:{port}")
    project = write_project(tmp_path, suffix)
    doctor = run(check, project, environment(None))
    assert "FAIL" not in doctor, doctor
    run_it(project, f"kafka://{kafka_bootstrap}", suffix)


@pytest.mark.multiprocess
def test_the_testing_guides_kafka_test_passes_against_the_quickstart_service(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    project = write_project(tmp_path, suffix)
    guide = files(TESTING_GUIDE)
    assert set(guide) == {"test_shop_on_kafka.py"}, guide.keys()
    (project / "test_shop_on_kafka.py").write_text(
        renamed(guide["test_shop_on_kafka.py"], suffix, python=True))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_shop_on_kafka.py"], cwd=project,
                          env=environment(f"kafka://{kafka_bootstrap}"),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
