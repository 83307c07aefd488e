"""A real Apache Kafka (KRaft) on loopback for the tests: 1 or 3 nodes, no Docker.

The broker comes from Maven Central as plain jars (``scripts/kafka/fetch.sh`` copies them to
``$MILLSTREAM_KAFKA_LIB``, default ``~/.cache/millstream/kafka-4.4.0/lib``) and runs as
``java -cp 'LIB/*' kafka.Kafka server.properties``, one process per node; every node is a
combined broker + controller with a static quorum (``controller.quorum.voters``).

Layout of a cluster's base directory::

    state.json          bootstrap, ports, pids, status (starting | ready | failed | stopped), reason
    node-N.pid          the pid of node N's java process (N = node.id = index + 1)
    node-N/             server.properties, server.log (log4j), stdout.log, format.log, data/

Processes are stopped and killed only by the pids recorded here, after checking that the pid
still runs this node's ``server.properties`` (never by process name).

Also a small CLI for running a cluster by hand, e.g. for a backend author who wants one broker
across many pytest runs (``MILLSTREAM_KAFKA_BOOTSTRAP=$(jq -r .bootstrap DIR/state.json)``)::

    python -m tests.support.kafka_cluster start --nodes 1 --dir DIR [--no-wait]
    python -m tests.support.kafka_cluster status --dir DIR
    python -m tests.support.kafka_cluster stop --dir DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "kafka"
KAFKA_VERSION = "4.4.0"

#: millstream's record size limit: key + value + header names and values.
MAX_RECORD_BYTES = 1 << 20
#: The broker runs with Kafka's default batch limit, ``message.max.bytes`` = 1 MiB + 12 bytes,
#: framing included (not set here: the tests see what a default broker does). Streams that
#: millstream creates raise their own ``max.message.bytes`` to 1 MiB + 64 KiB = 1_114_112.
BROKER_DEFAULT_MESSAGE_MAX_BYTES = 1048588
STREAM_MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + 64 * 1024

JVM_FLAGS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
STARTED = "Kafka Server started"

__all__ = [
    "BROKER_DEFAULT_MESSAGE_MAX_BYTES", "MAX_RECORD_BYTES", "STREAM_MAX_MESSAGE_BYTES",
    "BackgroundStart", "KafkaCluster",
    "KafkaStartError", "KafkaUnavailable", "Runtime", "find_runtime", "reap_stale",
]


class KafkaUnavailable(RuntimeError):
    """Raised when this machine cannot run a broker: no Java ≥ 17, no jars and no Maven."""


class KafkaStartError(RuntimeError):
    """Raised when a node exits or the cluster is not ready within the timeout."""


# --- what a broker needs: java and the jars --------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    java: str
    lib: Path


def default_lib() -> Path:
    env = os.environ.get("MILLSTREAM_KAFKA_LIB")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "millstream" / f"kafka-{KAFKA_VERSION}" / "lib"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise KafkaUnavailable("no java on PATH (or JAVA_HOME); Kafka 4.x needs Java ≥ 17 "
                               "(Debian: apt-get install openjdk-17-jdk-headless)")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"{java} -version failed: {exc}") from exc
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(m.group(1)) if m else 0
    if m and major == 1:  # "1.8.0_x" is Java 8
        major = int(m.group(2) or 0)
    if major < 17:
        raise KafkaUnavailable(f"{java} is Java {major or '?'}; Kafka 4.x needs Java ≥ 17")
    return java


def _jars_present(lib: Path) -> bool:
    return (lib / ".complete").is_file() and any(lib.glob("kafka_2.13-*.jar"))


def find_runtime(fetch: bool = False) -> Runtime:
    """Java ≥ 17 and the broker jars; with ``fetch``, run ``scripts/kafka/fetch.sh`` if needed.

    Raises ``KafkaUnavailable`` naming what is missing.
    """
    if os.environ.get("MILLSTREAM_KAFKA_DISABLE") == "1":
        raise KafkaUnavailable("disabled by MILLSTREAM_KAFKA_DISABLE=1")
    java = _java()
    lib = default_lib()
    if _jars_present(lib):
        return Runtime(java, lib)
    if not fetch:
        raise KafkaUnavailable(f"no Kafka jars in {lib}; run scripts/kafka/fetch.sh")
    if shutil.which("mvn") is None:
        raise KafkaUnavailable(f"no Kafka jars in {lib} and no mvn to fetch them "
                               "(Debian: apt-get install maven; then scripts/kafka/fetch.sh)")
    out = subprocess.run(["bash", str(SCRIPTS / "fetch.sh")], capture_output=True, text=True)
    if out.returncode != 0 or not _jars_present(lib):
        raise KafkaUnavailable(f"scripts/kafka/fetch.sh failed ({out.returncode}): "
                               f"{out.stderr.strip()[-1500:]}")
    return Runtime(java, lib)


# --- processes by recorded pid ----------------------------------------------------------------

def _runs(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive and (where /proc exists) its command line contains ``marker``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: the pid was reused
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return marker in (proc / "cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return False


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # as Kafka's Uuid.randomUuid: not mistaken for an option
            return cid


# --- the cluster -------------------------------------------------------------------------------

@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    dir: Path
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # where server.log ended when this process was launched

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    def running(self) -> bool:
        if self.pid is None:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        return _runs(self.pid, str(self.config))


class KafkaCluster:
    """``nodes`` (1 or 3) combined broker+controller Kafka nodes on 127.0.0.1, free ports.

    ``start()`` formats and launches every node and returns; ``wait_ready()`` blocks until
    every running node logged ``Kafka Server started`` and an AdminClient sees all of them.
    Node indexes are 0-based (``node.id`` is index + 1). ``stop()`` is idempotent.
    With ``detach`` the java processes get their own session and outlive this process (CLI).
    """

    def __init__(self, base_dir: Path, nodes: int = 1, runtime: Runtime | None = None,
                 detach: bool = False, owner: int | None = None) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"nodes must be 1 or 3, not {nodes}")
        self.base_dir = Path(base_dir).resolve()
        self.runtime = runtime or find_runtime()
        self.detach = detach
        self.owner = owner  # the pid whose death makes this cluster stale (reap_stale)
        self.cluster_id = new_cluster_id()
        ports = _free_ports(2 * nodes)
        self.nodes = [_Node(i + 1, ports[2 * i], ports[2 * i + 1], self.base_dir / f"node-{i + 1}")
                      for i in range(nodes)]
        self.status = "new"
        self.reason = ""

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def server_properties(self, node: _Node) -> str:
        three = len(self.nodes) == 3
        rf, min_isr = (3, 2) if three else (1, 1)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
                         f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": node.dir / "data",
            "num.network.threads": 2,
            "num.io.threads": 2,
            # the cleaner's default 128 MiB dedupe buffer does not fit a 512 MiB heap
            "log.cleaner.dedupe.buffer.size": 2097152,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, node: _Node, main: str, *args: str) -> list[str]:
        return [self.runtime.java, *JVM_FLAGS,
                f"-Dlog4j2.configurationFile={SCRIPTS / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={node.dir}",
                "-cp", f"{self.runtime.lib}/*", main, *args]

    def start(self) -> None:
        """Format every node's log dir (in parallel) and launch every node; do not wait."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.status = "starting"
        self._save()
        formats = []
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.config.write_text(self.server_properties(node))
            with open(node.dir / "format.log", "wb") as out:
                formats.append(subprocess.Popen(
                    self._java(node, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                               "-c", str(node.config), "--ignore-formatted"),
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for proc in formats:
            proc.wait(120)
        for node, proc in zip(self.nodes, formats, strict=True):
            if proc.returncode != 0:
                text = (node.dir / "format.log").read_text(errors="replace")[-2000:]
                self._fail(f"formatting node {node.node_id} failed ({proc.returncode}): {text}")
        for i in range(len(self.nodes)):
            self._launch(i)
        self._save()

    def _launch(self, i: int) -> None:
        node = self.nodes[i]
        node.log_offset = node.log.stat().st_size if node.log.exists() else 0
        with open(node.dir / "stdout.log", "ab") as out:
            node.proc = subprocess.Popen(
                self._java(node, "kafka.Kafka", str(node.config)), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=node.dir,
                start_new_session=self.detach)
        node.pid = node.proc.pid
        (self.base_dir / f"node-{node.node_id}.pid").write_text(f"{node.pid}\n")

    def _fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason
        self._save()
        raise KafkaStartError(reason)

    def wait_ready(self, timeout: float = 120.0,
                   cancel: threading.Event | None = None) -> None:
        """Block until every launched node is up and serving; raise ``KafkaStartError``."""
        deadline = time.monotonic() + timeout
        expected = [n for n in self.nodes if n.pid is not None]
        last = "no node has logged 'Kafka Server started' yet"
        while True:
            if cancel is not None and cancel.is_set():
                raise KafkaStartError("cancelled")
            for n in expected:
                if not n.running():
                    self._fail(f"node {n.node_id} (pid {n.pid}) exited while starting; "
                               f"{n.dir}/server.log ends:\n{self.log_tail(n.node_id - 1)}")
            if all(self._logged_started(n) for n in expected):
                last = self._serving(len(expected))
                if not last:
                    self.status, self.reason = "ready", ""
                    self._save()
                    return
            if time.monotonic() > deadline:
                self._fail(f"not ready after {timeout:.0f} s ({last}); logs in {self.base_dir}")
            time.sleep(0.2)

    def _logged_started(self, node: _Node) -> bool:
        try:
            with open(node.log, "rb") as f:
                f.seek(node.log_offset)
                return STARTED.encode() in f.read()
        except FileNotFoundError:
            return False

    def _serving(self, brokers: int) -> str:
        """'' when an AdminClient lists topics and sees ``brokers`` brokers, else why not."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            md = admin.list_topics(timeout=5)
        except KafkaException as exc:
            return f"list_topics: {exc}"
        if len(md.brokers) < brokers:
            return f"metadata shows {len(md.brokers)} of {brokers} brokers"
        return ""

    def log_tail(self, i: int, lines: int = 25) -> str:
        node = self.nodes[i]
        text = ""
        for f in (node.log, node.dir / "stdout.log"):
            if f.exists():
                text += "".join(f.read_text(errors="replace").splitlines(True)[-lines:])
        return text

    def refresh(self) -> None:
        """Take the pids in state.json as the truth: another process (``millstream verify
        --kill-brokers --cluster-dir DIR``) may have killed and restarted nodes. A node whose
        pid changed is watched by pid from then on; its old process, if ours, is reaped."""
        pids = json.loads((self.base_dir / "state.json").read_text())["pids"]
        for node, pid in zip(self.nodes, pids, strict=True):
            if pid != node.pid:
                if node.proc is not None:
                    node.proc.poll()
                node.pid, node.proc = pid, None

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (0-based) by its recorded pid and reap it."""
        self.refresh()
        node = self.nodes[i]
        if node.pid is not None and node.running():
            os.kill(node.pid, signal.SIGKILL)
        self._reap(node, 30)
        node.pid = None
        (self.base_dir / f"node-{node.node_id}.pid").unlink(missing_ok=True)
        self._save()

    def restart_node(self, i: int) -> None:
        """Launch node ``i`` again (after ``kill_node``); call ``wait_ready`` to wait for it."""
        self.refresh()
        if self.nodes[i].running():
            raise RuntimeError(f"node {i + 1} still runs (pid {self.nodes[i].pid})")
        self._launch(i)
        self._save()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every node, SIGKILL those still running after ``grace`` s. Idempotent."""
        if (self.base_dir / "state.json").exists():
            self.refresh()
        live = [n for n in self.nodes if n.pid is not None and n.running()]
        for n in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + grace
        for n in live:
            if not self._reap(n, max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.pid, signal.SIGKILL)  # type: ignore[arg-type]
                self._reap(n, 30)
        for n in self.nodes:
            n.pid = None
            (self.base_dir / f"node-{n.node_id}.pid").unlink(missing_ok=True)
        if self.status != "failed":
            self.status = "stopped"
        if self.base_dir.exists():
            self._save()

    def _reap(self, node: _Node, timeout: float) -> bool:
        """Wait until ``node``'s process is gone; False if it still runs after ``timeout``."""
        if node.proc is not None:
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while node.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    # --- state.json ---------------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "bootstrap": self.bootstrap, "nodes": len(self.nodes), "cluster_id": self.cluster_id,
            "ports": [n.port for n in self.nodes],
            "controller_ports": [n.controller_port for n in self.nodes],
            "pids": [n.pid for n in self.nodes], "status": self.status, "reason": self.reason,
            "owner": self.owner, "java": self.runtime.java, "lib": str(self.runtime.lib),
        }
        tmp = self.base_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.base_dir / "state.json")

    @classmethod
    def attach(cls, base_dir: Path) -> KafkaCluster:
        """The cluster recorded in ``base_dir/state.json`` (started by another process)."""
        base_dir = Path(base_dir).resolve()
        state = json.loads((base_dir / "state.json").read_text())
        self = cls.__new__(cls)
        self.base_dir = base_dir
        self.runtime = Runtime(state["java"], Path(state["lib"]))
        self.detach, self.owner = True, state.get("owner")
        self.cluster_id = state["cluster_id"]
        self.status, self.reason = state["status"], state["reason"]
        self.nodes = [
            _Node(i + 1, port, cport, base_dir / f"node-{i + 1}", pid)
            for i, (port, cport, pid) in enumerate(
                zip(state["ports"], state["controller_ports"], state["pids"], strict=True))]
        return self


def reap_stale(root: Path, prefix: str = "millstream-kafka-") -> list[Path]:
    """Stop and delete clusters under ``root`` whose owner process is gone; return their dirs.

    A pytest session that was SIGKILLed leaves its brokers running: the next session calls
    this. Clusters without an owner (started by the CLI) are left alone.
    """
    removed = []
    for state in sorted(root.glob(f"{prefix}*/state.json")):
        try:
            owner = json.loads(state.read_text()).get("owner")
            if owner is None or _runs(owner, ""):
                continue
            KafkaCluster.attach(state.parent).stop(grace=5)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        shutil.rmtree(state.parent, ignore_errors=True)
        removed.append(state.parent)
    return removed


# --- a start that does not block the caller ---------------------------------------------------

class BackgroundStart:
    """Find the runtime (fetching jars if needed), start a cluster and wait for it — on a thread.

    ``begin()`` returns at once; ``result()`` blocks until the cluster is ready and returns it,
    or raises ``KafkaUnavailable`` / ``KafkaStartError`` (the same one on every call);
    ``stop()`` cancels a start in progress and stops the cluster. Nothing escapes the thread.
    """

    def __init__(self, make: Callable[[Runtime], KafkaCluster], timeout: float = 120.0) -> None:
        self._make = make
        self._timeout = timeout
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-start", daemon=True)
        self.cluster: KafkaCluster | None = None
        self.error: Exception | None = None
        self.seconds: float | None = None

    def begin(self) -> BackgroundStart:
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            runtime = find_runtime(fetch=True)
            self.cluster = self._make(runtime)
            self.cluster.start()
            self.cluster.wait_ready(self._timeout, cancel=self._cancel)
            self.seconds = time.monotonic() - t0
        except Exception as exc:  # handed to result(); a thread must not raise
            self.error = exc

    def result(self, timeout: float = 600.0) -> KafkaCluster:
        if self._thread.ident is None:
            self.begin()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise KafkaStartError(f"Kafka still not started after waiting {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        assert self.cluster is not None
        return self.cluster

    def stop(self, grace: float = 10.0) -> None:
        self._cancel.set()
        if self._thread.ident is not None:
            self._thread.join()
        if self.cluster is not None:
            self.cluster.stop(grace=grace)


# --- CLI -----------------------------------------------------------------------------------------

def _cli_start(args: argparse.Namespace) -> int:
    base = Path(args.dir)
    if (base / "state.json").exists():
        old = KafkaCluster.attach(base)
        if any(n.running() for n in old.nodes):
            print(f"a cluster already runs in {base} ({old.bootstrap}); stop it first",
                  file=sys.stderr)
            return 1
    cluster = KafkaCluster(base, args.nodes, runtime=find_runtime(fetch=True), detach=True)
    try:
        cluster.start()
    except KafkaStartError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    print(cluster.bootstrap, flush=True)
    if args.no_wait:
        if os.fork() != 0:  # the parent returns; the child records ready or failed
            return 0
        os.setsid()
        for node in cluster.nodes:  # the nodes are the parent's children: watch them by pid
            node.proc = None
        for fd in (0, 1, 2):
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    try:
        cluster.wait_ready(args.timeout)
    except KafkaStartError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _cli_stop(args: argparse.Namespace) -> int:
    cluster = KafkaCluster.attach(Path(args.dir))
    cluster.stop(grace=args.grace)
    print(f"stopped {cluster.bootstrap}")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    cluster = KafkaCluster.attach(Path(args.dir))
    dead = [n.node_id for n in cluster.nodes if n.pid is not None and not n.running()]
    if dead and cluster.status in ("starting", "ready"):
        cluster.status, cluster.reason = "failed", f"node(s) {dead} no longer run"
        cluster._save()
    print(json.dumps(json.loads((cluster.base_dir / "state.json").read_text()), indent=2))
    return 0 if cluster.status == "ready" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kafka_cluster",
                                     description="Run a local Kafka cluster for the tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="format and launch the nodes; wait until ready")
    start.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    start.add_argument("--dir", required=True)
    start.add_argument("--timeout", type=float, default=180.0)
    start.add_argument("--no-wait", action="store_true",
                       help="return at once; state.json turns ready or failed later")
    stop = sub.add_parser("stop", help="SIGTERM, then SIGKILL, the recorded pids")
    stop.add_argument("--dir", required=True)
    stop.add_argument("--grace", type=float, default=10.0)
    status = sub.add_parser("status", help="print state.json (exit 0 only when ready)")
    status.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    try:
        return {"start": _cli_start, "stop": _cli_stop, "status": _cli_status}[args.command](args)
    except KafkaUnavailable as exc:
        print(f"Kafka unavailable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
