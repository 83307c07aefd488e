"""Start ``tests.support.log_worker`` child processes and read what they report.

A child runs from the repository root (so ``tests`` is importable) with its stdout and stderr
in files: lines written before a SIGKILL stay readable, and the parent never blocks on a
full pipe. Only complete lines count (a line cut by a kill is ignored).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "Child", "run_until_then_stop"]

#: what ``millstream run`` prints once its SIGTERM handler is installed
RUNNING_LINE = " running as group "


def run_until_then_stop(start: Callable[[], subprocess.Popen[bytes]], log: Path,
                        done: Callable[[], bool], timeout: float, what: str,
                        stop_timeout: float = 60) -> None:
    """Start a ``millstream run`` (``start``; its stderr appended to ``log``), wait until
    ``done()`` and it runs, then stop it with SIGTERM: it must exit 0.

    "It runs" is its running line in what it wrote to ``log``, printed once its SIGTERM
    handler is installed. A stop sent before that (while it imports) kills it with exit -15
    instead of stopping it cleanly, and a run started when its work was already done is
    ``done()`` at once."""
    since = log.stat().st_size if log.exists() else 0
    proc = start()
    try:
        wait_until(lambda: (done() and _running_since(log, since)) or proc.poll() is not None,
                   timeout, what)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(stop_timeout)
    assert code == 0, log.read_text()


def _running_since(log: Path, start: int) -> bool:
    with open(log, "rb") as f:
        f.seek(start)
        return RUNNING_LINE.encode() in f.read()


class Child:
    """One worker process (``python -m tests.support.log_worker ROLE ARGS``)."""

    def __init__(self, role: str, *args: str, out: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = out.stem
        self.out_path = out
        self.err_path = out.with_suffix(".err")
        child_env = dict(os.environ)
        child_env.pop("MILLSTREAM_FAULT", None)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        child_env.update(env or {})
        with open(self.out_path, "wb") as stdout, open(self.err_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.log_worker", role, *args],
                cwd=REPO, stdout=stdout, stderr=stderr, env=child_env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[str]:
        text = self.out_path.read_text(errors="replace")
        complete = text if text.endswith("\n") else text.rpartition("\n")[0]
        return complete.splitlines()

    def fields(self, tag: str) -> list[list[str]]:
        """The fields after ``tag`` of every line that starts with it."""
        out = []
        for line in self.lines():
            parts = line.split(" ")
            if parts[0] == tag:
                out.append(parts[1:])
        return out

    def texts(self, tag: str) -> list[str]:
        """The rest of every line that starts with ``tag`` and a space, unsplit."""
        return [line.partition(" ")[2] for line in self.lines()
                if line.partition(" ")[0] == tag]

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def count(self, tag: str) -> int:
        return len(self.fields(tag))

    def wait_for(self, tag: str, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``n`` lines start with ``tag``; fail at once if the child dies first."""

        def check() -> bool:
            if self.count(tag) >= n:
                return True
            if self.proc.poll() is not None and self.count(tag) < n:
                raise AssertionError(
                    f"child {self.name} exited with {self.proc.returncode} before printing "
                    f"{n} × {tag!r}; stderr:\n{self.stderr()[-3000:]}")
            return False

        wait_until(check, timeout, f"{n} × {tag!r} from child {self.name}", interval=0.01)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL the child and reap it; its return code (-9 unless it had already ended)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"child {self.name} did not exit within {timeout} s; stderr:\n"
                f"{self.stderr()[-3000:]}") from None

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            if self.proc.returncode is None:
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.kill()
