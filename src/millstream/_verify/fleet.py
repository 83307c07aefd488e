"""The worker processes of a verify run: start, SIGKILL, restart and stop them by pid.

Every start of a slot (``producer-2``) is a new incarnation (``producer-2.3``) with its own
history file, so a restarted producer never sends a value an earlier one sent. Workers run in
their own session: a Ctrl-C in the terminal reaches the runner only, which then stops them;
each is given the runner's pid and dies with it (``workers.die_with_parent``), so no worker
keeps writing to the deployment once the runner is gone, however it ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BEGIN_WAIT_S", "RESTART_PAUSE_S", "Exit", "Fleet", "Worker"]

#: The least time between two starts of a slot whose worker keeps ending on its own.
RESTART_PAUSE_S = 1.0
#: How long a stop waits for a worker started just before it to begin (its history file
#: created, its SIGTERM handler installed): a worker SIGTERMed while still importing dies
#: without a trace, and a short run whose restarted producers all died so has no producer
#: that stopped cleanly (seen in CI: a 4 s run, both producers killed and restarted).
BEGIN_WAIT_S = 30.0


@dataclass
class Worker:
    """One running incarnation of a slot."""

    role: str
    slot: int
    incarnation: int
    proc: subprocess.Popen[bytes]
    folder: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.slot}.{self.incarnation}"

    @property
    def history(self) -> Path:
        return self.folder / f"{self.name}.jsonl"

    @property
    def errors(self) -> Path:
        return self.folder / f"{self.name}.err"


@dataclass(frozen=True, slots=True)
class Exit:
    """A worker that ended without being told to: its name, exit code and last stderr line."""

    name: str
    returncode: int
    last_line: str


@dataclass
class Fleet:
    """The run's workers, writing histories into ``folder``."""

    url: str
    stream: str
    folder: Path
    env: Mapping[str, str]
    workers: list[Worker] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    exits: list[Exit] = field(default_factory=list)
    _incarnations: Counter[tuple[str, int]] = field(default_factory=Counter)

    def start(self, role: str, slot: int) -> Worker:
        incarnation = self._incarnations[(role, slot)]
        self._incarnations[(role, slot)] += 1
        name = f"{role}-{slot}.{incarnation}"
        with open(self.folder / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "millstream._verify.workers", role,
                 "--streams", self.url, "--stream", self.stream,
                 "--history", str(self.folder / f"{name}.jsonl"), "--name", name,
                 "--parent", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=dict(self.env), start_new_session=True)
        worker = Worker(role, slot, incarnation, proc, self.folder)
        self.workers.append(worker)
        return worker

    def kill_and_restart(self, worker: Worker) -> Worker:
        """SIGKILL ``worker`` (by its pid), reap it, and start its slot again."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        self.kills[worker.role] += 1
        self.workers.remove(worker)
        return self.start(worker.role, worker.slot)

    def restart_exited(self) -> None:
        """Start again every slot whose worker ended on its own, noting why it ended — at most
        once a second per slot, so a worker that cannot start does not become a fork storm."""
        now = time.monotonic()
        for worker in [w for w in self.workers
                       if w.proc.poll() is not None and now - w.started >= RESTART_PAUSE_S]:
            self.exits.append(Exit(worker.name, worker.proc.returncode or 0, _last_line(worker)))
            self.workers.remove(worker)
            self.start(worker.role, worker.slot)

    def stop(self, grace: float, role: str | None = None) -> None:
        """SIGTERM every worker (of ``role``, if given) once it has begun (at most
        ``BEGIN_WAIT_S`` seconds), SIGKILL those still running ``grace`` seconds later."""
        stopping = [w for w in self.workers if role is None or w.role == role]
        _wait_until_begun(stopping, BEGIN_WAIT_S)
        for worker in stopping:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for worker in stopping:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait()
        for worker in stopping:
            code = worker.proc.returncode
            if code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                self.exits.append(Exit(worker.name, code or 0, _last_line(worker)))
            self.workers.remove(worker)

    def kill_all(self) -> None:
        """SIGKILL every worker at once (Ctrl-C or a failure of the runner)."""
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        self.workers.clear()

    def histories(self) -> list[Path]:
        return sorted(self.folder.glob("*.jsonl"))


def _wait_until_begun(workers: list[Worker], timeout: float) -> None:
    """Wait until each of ``workers`` has created its history file (a worker does so after
    installing its SIGTERM handler) or ended, at most ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    waiting = list(workers)
    while waiting and time.monotonic() < deadline:
        waiting = [w for w in waiting if w.proc.poll() is None and not w.history.exists()]
        if waiting:
            time.sleep(0.02)


def _last_line(worker: Worker) -> str:
    try:
        lines = worker.errors.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
