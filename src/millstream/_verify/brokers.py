"""Kill and restart nodes of the test Kafka cluster whose directory ``--cluster-dir`` names.

The cluster is the one ``tests/support/kafka_cluster.py`` runs (``python -m
tests.support.kafka_cluster start --nodes 3 --dir DIR``): ``DIR/state.json`` records its
bootstrap and the pid of every node, and ``DIR/node-N/`` holds node N's ``server.properties``
and ``server.log``. Only a pid recorded there whose command line names that node's
``server.properties`` is ever signalled. A killed node is restarted with the very command
line it ran with (read from ``/proc`` before the kill); its new pid goes back into
``state.json`` so the harness stops it later.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from millstream.errors import ConfigError, OperationTimeoutError

__all__ = ["STARTED", "TestCluster"]

#: What a node logs once it serves.
STARTED = b"Kafka Server started"


def _runs(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive, not a zombie, and its command line contains ``marker``."""
    proc = Path(f"/proc/{pid}")
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return marker in (proc / "cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return False


class TestCluster:
    """The test cluster recorded in ``base_dir/state.json``; nodes are 0-based indexes."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir.resolve()
        self._argv: dict[int, list[str]] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[int, int] = {}
        state = self._state()
        if not Path("/proc/self/cmdline").exists():
            raise ConfigError("--kill-brokers needs /proc (Linux) to check a broker's pid "
                              "before signalling it")
        if state.get("status") != "ready":
            raise ConfigError(f"the test cluster in {self.base_dir} is {state.get('status')!r}, "
                              "not 'ready'; start it (python -m tests.support.kafka_cluster "
                              "start --dir DIR) and wait until it is ready")
        self.bootstrap = str(state["bootstrap"])
        self.nodes = len(state["pids"])
        for i in range(self.nodes):
            if not self.running(i):
                raise ConfigError(f"node {i + 1} of the test cluster in {self.base_dir} does not "
                                  f"run (pid {state['pids'][i]}); restart the cluster first")

    def _state(self) -> dict[str, Any]:
        path = self.base_dir / "state.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text())
            if not isinstance(state["pids"], list) or not state["bootstrap"]:
                raise ValueError("no pids or bootstrap")
        except FileNotFoundError as exc:
            raise ConfigError(f"{path} does not exist: --cluster-dir must name the directory "
                              "of a test cluster (python -m tests.support.kafka_cluster "
                              "start --dir DIR)") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path} is not a test cluster's state file: {exc}") from exc
        return state

    def _save_pid(self, i: int, pid: int | None) -> None:
        state = self._state()
        state["pids"][i] = pid
        tmp = self.base_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.base_dir / "state.json")
        pidfile = self.base_dir / f"node-{i + 1}.pid"
        if pid is None:
            pidfile.unlink(missing_ok=True)
        else:
            pidfile.write_text(f"{pid}\n")

    def _node_dir(self, i: int) -> Path:
        return self.base_dir / f"node-{i + 1}"

    def _pid(self, i: int) -> int | None:
        pid = self._state()["pids"][i]
        return int(pid) if pid is not None else None

    def running(self, i: int) -> bool:
        pid = self._pid(i)
        return pid is not None and _runs(pid, str(self._node_dir(i) / "server.properties"))

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` by its recorded pid and wait until it is gone."""
        pid = self._pid(i)
        if pid is None or not self.running(i):
            raise ConfigError(f"node {i + 1} of {self.base_dir} does not run; not killing pid "
                              f"{pid}")
        self._argv[i] = (Path(f"/proc/{pid}/cmdline").read_bytes()
                         .decode(errors="surrogateescape").split("\0")[:-1])
        os.kill(pid, signal.SIGKILL)
        child = self._children.pop(i, None)
        if child is not None:
            child.wait()
        deadline = time.monotonic() + 30
        while _runs(pid, "") and time.monotonic() < deadline:
            time.sleep(0.05)
        self._save_pid(i, None)

    def restart(self, i: int) -> None:
        """Launch node ``i`` again with the command line it was killed with; do not wait."""
        node = self._node_dir(i)
        log = node / "server.log"
        self._log_offsets[i] = log.stat().st_size if log.exists() else 0
        with open(node / "stdout.log", "ab") as out:
            child = subprocess.Popen(self._argv[i], cwd=node, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._children[i] = child
        self._save_pid(i, child.pid)

    def down(self) -> list[int]:
        """Nodes this object killed that are not running again."""
        return [i for i in self._argv if not self.running(i)]

    def started(self, i: int) -> bool:
        """True once node ``i``, restarted here, logged that it serves."""
        try:
            with open(self._node_dir(i) / "server.log", "rb") as f:
                f.seek(self._log_offsets.get(i, 0))
                return STARTED in f.read()
        except FileNotFoundError:
            return False

    def heal(self, timeout: float = 180.0) -> None:
        """Restart every node killed here and wait until each restarted one serves."""
        for i in self.down():
            self.restart(i)
        deadline = time.monotonic() + timeout
        for i in list(self._log_offsets):
            while not self.started(i):
                if not self.running(i):
                    raise OperationTimeoutError(f"node {i + 1} exited while restarting; see "
                                                f"{self._node_dir(i)}/server.log")
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(f"node {i + 1} did not start within "
                                                f"{timeout:.0f} s; see its server.log")
                time.sleep(0.2)
        self._log_offsets.clear()

    def close(self) -> None:
        """Forget the nodes started here: they keep running, and the harness stops them by the
        pids in state.json."""
        self._children.clear()
