"""``millstream console`` as a user starts it: a process serving the configured platform,
read-only without a token; bad options are refused naming the value."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from millstream.console._server import free_port
from tests.cli.conftest import Invoke


def test_it_serves_the_configured_platform_read_only_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MILLSTREAM_HOME": str(tmp_path / "home")}
    env.pop("MILLSTREAM_CONSOLE_TOKEN", None)
    child = subprocess.Popen([sys.executable, "-m", "millstream", "console", "--port", str(port)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx2.get(f"http://127.0.0.1:{port}/signin", timeout=2)
                break
            except httpx2.TransportError:
                assert child.poll() is None, child.communicate()[0]
                assert time.monotonic() < deadline, "the console did not answer within 30 s"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert "This console is read-only" in answer.text
        refused = httpx2.post(f"http://127.0.0.1:{port}/signin", data={"token": "x"},
                              headers={"origin": f"http://127.0.0.1:{port}"}, timeout=5)
        assert refused.status_code == 403
    finally:
        child.terminate()
        out, _ = child.communicate(timeout=15)
    assert out.splitlines()[0] == (f"millstream console on http://127.0.0.1:{port}/ for local: "
                                   f"— read-only (no --token); Ctrl-C stops it")


def test_a_short_token_and_an_empty_history_are_refused(run: Invoke) -> None:
    short = run("console", "--token", "abc", code=2)
    assert "Invalid value for --token: the token must be 8 characters or more" in short.output
    empty = run("console", "--history", "0s", code=2)
    assert "'0s': the history must keep some time (more than 0 s)" in empty.output
    nonsense = run("console", "--history", "soon", code=2)
    assert "'soon' is not a span like 30m, 1h or 2d" in nonsense.output
