"""millstream beside the Python stream processors it is compared with, on one Kafka broker.

Run with ``make bench-peers`` or ``.venv-bench/bin/python bench/peers.py [--kafka HOST:PORT]
[--quick] [--rounds N] [--json PATH]`` (the peers come from the ``bench`` extra:
``pip install -e '.[bench]'``). The broker is ``--kafka``, else ``MILLSTREAM_KAFKA_BOOTSTRAP``.

Every system runs in a child process of its own (``bench/peers_systems.py`` says exactly what
each one does), reads the same pre-filled input topic (4 partitions, JSON records of ~100 B
keyed by their ``user``, 1,000 users) from its beginning in a fresh consumer group, and writes
to a fresh output topic of 4 partitions. The systems: a hand-written confluent-kafka loop,
Quix Streams, a millstream service (``dict`` in, ``dict`` out, defaults, run in-process by
``ServiceThreads``) and FastStream (its Kafka broker). Three workloads:

  pass   pass-through, JSON in → JSON out (200,000 records);
  count  the running count of records per user, output per record (100,000 records);
  io     a handler that waits 10 ms per record on I/O: synchronous handlers (the hand loop,
         Quix, millstream's ``def``) read 500 records, asynchronous ones (FastStream with
         ``max_workers=64``, millstream's ``async def`` with ``concurrency=64``) 10,000;
  window a count per user over tumbling windows of 10 s of event time, results when each
         window closes (200,000 records, 10 per user and window: 20,000 results; then one
         more record per user, which closes the last window). FastStream has no windows and
         is left out. Its rate is of input records: results per second × 10.

FastStream reads a tenth of pass and count (20,000 and 10,000 records, the first ones of the
same content, in topics of their own): its publisher waits for the broker's acknowledgement
of each record before the handler takes the next, some 400 records/s here, and 200,000
records would take eight minutes a round. A rate measured in the steady state does not depend
on how many records follow; the run time does.

Rounds (3) run every workload; within a round each workload's systems run one after the
other, the order rotated by one each round. How it is measured, the same for every system:
the parent samples the sum of the output topic's end offsets and the child's CPU time
(utime + stime of all its threads, from /proc/PID/stat) every 50 ms. The rate is the steady
state: records between the first sample at ≥ 5 % of N and the last sample before N, over the
time between them (so start-up, group join and the last partial interval are left out for
everyone alike; when fewer than 25 % of N fall in that window, up to the first sample at N);
CPU µs per record is the child's CPU time in the same window over those records. Also printed:
the wall time from starting the child to the N-th output (start-up included) and the child's
CPU time over its whole life (``wait4``). Every run must produce exactly N records: the count
is checked 0.5 s after it reached N and again after the child stopped (SIGTERM), and every
output record is read back and compared with what that input must give (each input id
exactly once, the value equal; for ``count``, the count the record's place in its input
partition implies). A run that fails the check is reported as failed and left out of the
medians. Figures are medians over rounds; "vs hand" is the median rate over the hand loop's,
"CPU vs hand" the hand loop's CPU per record over the system's (the steadier figure on a busy
machine; the pass-through targets print it beside the rate ratio).

Targets printed (issue 13): the millstream pass-through ≥ 2× the fastest peer (Quix Streams,
FastStream) and ≥ 0.85× the hand-written loop; the async 10 ms I/O handler with
``concurrency=64`` ≥ 0.8 × 6,400 records/s and ≥ 10× the same handler written synchronously
(reported as not available while millstream has no async handlers). Issue 14: millstream's
tumbling-window count ≥ 2× Quix Streams'.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_systems  # bench/peers_systems.py, next to this file

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka import libversion as rdkafka_version
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - without the bench extra
    Producer = None  # type: ignore[assignment,misc]

REPO = Path(__file__).resolve().parents[1]
SYSTEMS_PY = Path(__file__).resolve().parent / "peers_systems.py"
PARTITIONS = 4
USERS = 1_000
SAMPLE_S = 0.05
LOW_MARK = 0.05  # the steady-state window starts at this fraction of N
SETTLE_S = 0.5  # after N: wait this long and count again (no duplicates on the way out)
STOP_WAIT_S = 30.0
PEERS = ("quix", "faststream")
SYSTEMS = {
    "pass": ("hand", "quix", "millstream", "faststream"),
    "count": ("hand", "quix", "millstream", "faststream"),
    "io": ("hand", "quix", "millstream", "faststream", "millstream-async"),
    "window": ("hand", "quix", "millstream"),
}
WINDOW_MS = peers_systems.WINDOW_MS
PER_WINDOW = WINDOW_MS // USERS  # records of one user in one window (ids i, i + USERS, ...)
ASYNC = {"faststream", "millstream-async"}  # read the larger io input

LABEL = {"hand": "hand-written confluent-kafka", "quix": "Quix Streams",
         "millstream": "millstream service", "faststream": "FastStream (Kafka broker)",
         "millstream-async": "millstream async, concurrency=64"}
TARGET_PEER, TARGET_HAND = 2.0, 0.85
TARGET_ASYNC_RATE, TARGET_ASYNC_VS_SYNC = 0.8 * 6_400, 10.0
TARGET_WINDOW_VS_QUIX = 2.0


def input_kind(workload: str, system: str) -> str:
    """Which input a system reads: FastStream's publisher waits for each record's
    acknowledgement (some 400 records/s here), so it reads a tenth of pass and count; the
    asynchronous I/O handlers read twenty times what the synchronous ones do."""
    if workload == "io":
        return "io-async" if system in ASYNC else "io"
    return f"{workload}-small" if system == "faststream" else workload


def value_of(i: int) -> dict[str, Any]:
    """Input record ``i`` (~100 B as JSON); its key is its ``user``."""
    return {"id": i, "user": f"user-{i % USERS:04d}", "action": "purchase-item",
            "amount": round(i % 1000 / 7, 2), "ts": peers_systems.BASE_TS + i}


def window_outputs(n: int) -> int:
    """How many window results ``n`` input records give: every user has ``PER_WINDOW``
    records in each of the ``n // WINDOW_MS`` windows the input fills; the last ``USERS``
    records (ids ``n`` … ``n + USERS − 1``, one per user) open the next window, which closes
    every earlier one and never closes itself."""
    return n // WINDOW_MS * USERS


def expected_output(workload: str, i: int) -> dict[str, Any]:
    """What input ``i`` must give. For ``count``: users are ``i % USERS`` and each user's
    records are written in id order to one partition, so record ``i`` is its user's
    ``i // USERS + 1``-th."""
    if workload == "count":
        return peers_systems.counted(value_of(i), i // USERS + 1)
    return value_of(i)


@dataclass
class Run:
    system: str
    workload: str
    round: int
    n: int
    rate: float = 0.0  # records/s, steady state
    cpu_us: float = 0.0  # child CPU µs per record, steady state
    wall_s: float = 0.0  # start of the child → N-th output
    cpu_total_s: float = 0.0  # the child's CPU over its whole life
    samples: int = 0
    window_s: float = 0.0  # the steady-state window's length
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats that do not fail the run

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the broker ----------------------------------------------------------------------------------


class Broker:
    """Topics for one benchmark run (all named with ``prefix``, deleted at the end), the input
    fill, end-offset sampling and reading outputs back."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.prefix = f"peers-{uuid.uuid4().hex[:8]}"
        self.probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{self.prefix}-probe",
                               "enable.auto.commit": False})

    def create(self, name: str) -> str:
        topic = f"{self.prefix}-{name}"
        for future in self.admin.create_topics(
                [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)],
                operation_timeout=30).values():
            future.result(timeout=60)
        deadline = time.monotonic() + 30  # until every partition has a leader
        while time.monotonic() < deadline:
            meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and len(meta.partitions) == PARTITIONS \
                    and all(p.leader >= 0 for p in meta.partitions.values()):
                break
            time.sleep(0.1)
        return topic

    def fill(self, topic: str, start: int, n: int) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                             "linger.ms": 20})
        failed: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        for i in range(start, start + n):
            value = value_of(i)
            while True:
                try:
                    producer.produce(topic, json.dumps(value).encode(), value["user"].encode(),
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 5_000 == 0:
                producer.poll(0)
        producer.flush()
        if failed:
            raise RuntimeError(f"filling {topic} failed: {failed[0]}")

    def end_offsets(self, topic: str) -> int | None:
        """The sum of ``topic``'s end offsets; None when the broker could not say just now
        (a fresh topic's leader not yet known to this client: the next sample asks again)."""
        try:
            return sum(self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=5,
                                                        cached=False)[1]
                       for p in range(PARTITIONS))
        except KafkaException:
            return None

    def read_all(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every record of ``topic`` as (key, value)."""
        ends = {p: self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}
        reader = Consumer({"bootstrap.servers": self.bootstrap,
                           "group.id": f"{self.prefix}-reader", "enable.auto.commit": False})
        reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS) if ends[p]])
        left = {p for p, end in ends.items() if end}
        got: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for msg in reader.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    continue
                got.append((msg.key(), msg.value()))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    left.discard(msg.partition())
        reader.close()
        return got

    def delete_all(self) -> None:
        names = [t for t in self.admin.list_topics(timeout=10).topics if self.prefix in t]
        if not names:
            return
        for future in self.admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result(timeout=60)
            except Exception as exc:  # cleanup: report, carry on
                print(f"  could not delete a benchmark topic: {exc}", flush=True)

    def close(self) -> None:
        self.probe.close()


# -- one run of one system -----------------------------------------------------------------------


def child_cpu_s(pid: int) -> float | None:
    """utime + stime of every thread of ``pid`` so far, in seconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_state(samples: list[tuple[float, int, float]],
                 n: int) -> tuple[float, float, float]:
    """(records/s, CPU µs per record, window seconds) between the first sample at ≥ 5 % of N
    and the last before N (or the first at N, when that window holds under a quarter of N)."""
    i0 = next(i for i, s in enumerate(samples) if s[1] >= LOW_MARK * n)
    i1 = max(i for i, s in enumerate(samples) if s[1] < n) if samples[i0][1] < n else i0
    if i1 <= i0 or samples[i1][1] - samples[i0][1] < n / 4:
        i1 = next(i for i, s in enumerate(samples) if s[1] >= n)
    if i1 <= i0:  # everything arrived between two samples: the window is that interval
        i0 = max(i0 - 1, 0)
    (t0, c0, cpu0), (t1, c1, cpu1) = samples[i0], samples[i1]
    records = max(c1 - c0, 1)
    return records / max(t1 - t0, 1e-9), (cpu1 - cpu0) / records * 1e6, t1 - t0


def stop_child(proc: subprocess.Popen[bytes], run: Run) -> None:
    """SIGTERM, wait for the child to stop (SIGKILL after ``STOP_WAIT_S``); its whole-life
    CPU time from ``wait4``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (poll() above saw it exit)
            return
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            run.cpu_total_s = usage.ru_utime + usage.ru_stime
            return
        if time.monotonic() > deadline:
            proc.kill()
            run.problems.append(f"did not stop within {STOP_WAIT_S:.0f} s of SIGTERM: killed")
            deadline = float("inf")
        time.sleep(0.05)


def verify_windows(broker: Broker, run: Run, topic: str) -> None:
    """Every window result read back: each (user, window start) of the input exactly once,
    counting ``PER_WINDOW`` records. The systems name the fields as they do (millstream's
    window rows: ``key``, ``start``, ``value``); all are read as (user, start, count)."""
    records = broker.read_all(topic)
    seen: set[tuple[str, int]] = set()
    bad: list[str] = []
    for _key, value in records:
        try:
            out = json.loads(value or b"")
            user = str(out["user"] if "user" in out else out["key"])
            start = int(out["start"])
            count = int(out["count"] if "count" in out else out["value"])
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"unreadable output {value[:80]!r}: {exc}")
            continue
        if (user, start) in seen:
            bad.append(f"window {user} @ {start} written twice")
        seen.add((user, start))
        if count != PER_WINDOW:
            bad.append(f"window {user} @ {start}: count {count}, not {PER_WINDOW}")
    if len(records) != run.n:
        run.problems.append(f"{len(records):,} window results, not {run.n:,}")
    base = peers_systems.BASE_TS
    expected = {(f"user-{u:04d}", base + w * WINDOW_MS) for u in range(USERS)
                for w in range(run.n // USERS)}
    if expected - seen:
        run.problems.append(f"{len(expected - seen):,} windows missing, e.g. "
                            f"{min(expected - seen)}")
    if seen - expected:
        run.problems.append(f"{len(seen - expected):,} windows that should not be there, e.g. "
                            f"{min(seen - expected)}")
    if bad:
        run.problems.append(f"{len(bad):,} wrong outputs, first: {bad[0]}")


def verify(broker: Broker, run: Run, topic: str, first: int) -> None:
    """Every output record read back: each input id exactly once, each value what it must be."""
    if run.workload == "window":
        verify_windows(broker, run, topic)
        return
    seen: set[int] = set()
    bad: list[str] = []
    records = broker.read_all(topic)
    for _key, value in records:
        try:
            out = json.loads(value or b"")
            i = int(out["id"])
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"unreadable output {value[:80]!r}: {exc}")
            continue
        if i in seen:
            bad.append(f"id {i} written twice")
        seen.add(i)
        if out != expected_output(run.workload, i):
            bad.append(f"id {i}: {out} is not {expected_output(run.workload, i)}")
    if len(records) != run.n:
        run.problems.append(f"{len(records):,} output records, not {run.n:,}")
    missing = set(range(first, first + run.n)) - seen
    if missing:
        run.problems.append(f"{len(missing):,} input ids have no output (e.g. {min(missing)})")
    if bad:
        run.problems.append(f"{len(bad):,} wrong outputs, first: {bad[0]}")


def run_system(broker: Broker, system: str, workload: str, rnd: int, source: str, first: int,
               n: int, logs: Path) -> Run:
    run = Run(system, workload, rnd, n)
    name = f"{workload}-{system}-r{rnd}"
    out = broker.create(f"out-{name}")
    cfg = {"system": system, "workload": workload, "bootstrap": broker.bootstrap,
           "input": source, "output": out, "group": f"{broker.prefix}-{name}",
           "app": f"{broker.prefix}-{name}", "partitions": PARTITIONS}
    log = logs / f"{name}.log"
    timeout = 120 + n / 1_000
    samples: list[tuple[float, int, float]] = []
    with open(log, "wb") as log_file:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(SYSTEMS_PY), json.dumps(cfg)],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            while True:
                got = broker.end_offsets(out)
                cpu = child_cpu_s(proc.pid)
                now = time.perf_counter()
                count = got if got is not None else (samples[-1][1] if samples else 0)
                if got is not None and cpu is not None:
                    samples.append((now, count, cpu))
                if count >= n:
                    run.wall_s = now - start
                    break
                if proc.poll() is not None:
                    run.problems.append(f"exited with {proc.returncode} after {count:,} "
                                        f"records")
                    break
                if now - start > timeout:
                    run.problems.append(f"only {count:,} of {n:,} records after {timeout:.0f} s")
                    break
                time.sleep(SAMPLE_S)
            if run.ok:
                time.sleep(SETTLE_S)
                extra = (broker.end_offsets(out) or n) - n
                if extra > 0:
                    run.problems.append(f"{extra:,} records more than N by {SETTLE_S} s after N")
        finally:
            stop_child(proc, run)
    run.samples = len(samples)
    if run.ok and proc.returncode not in (0, -signal.SIGTERM):
        run.problems.append(f"exited with {proc.returncode} when stopped")
    if run.ok:
        run.rate, run.cpu_us, run.window_s = steady_state(samples, n)
        if workload == "window":  # the rate of input records, which make the results
            run.rate, run.cpu_us = run.rate * PER_WINDOW, run.cpu_us / PER_WINDOW
        if run.window_s < 10 * SAMPLE_S:
            run.notes.append(f"a steady window of only {run.window_s:.2f} s (too few "
                             "records, or outputs released in bursts): the rate is unreliable")
        verify(broker, run, out, first)
    if not run.ok:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        run.problems.append("log tail: " + " | ".join(tail))
    return run


# -- report --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform()}


def versions() -> dict[str, str]:
    found = {}
    for dist in ("millstream", "confluent-kafka", "quixstreams", "faststream", "aiokafka",
                 "pydantic", "rocksdict", "orjson"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    found["librdkafka"] = rdkafka_version()[0]
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cI %s"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        found["millstream commit"] = rev[:100]
    except (OSError, subprocess.SubprocessError):
        pass
    return found


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def async_available() -> str:
    """'' when millstream takes an ``async def`` handler with ``concurrency=``, else why not."""
    cfg = {"system": "millstream-async", "workload": "io", "app": "probe", "partitions": 1,
           "input": "probe-in", "output": "probe-out", "group": "probe"}
    try:
        peers_systems.millstream_app(cfg)
    except Exception as exc:  # any refusal: report it, run the rest
        return f"not available yet ({type(exc).__name__}: {str(exc)[:160]})"
    return ""


def medians(runs: list[Run], workload: str, system: str) -> tuple[float, float] | None:
    good = [r for r in runs if r.workload == workload and r.system == system and r.ok]
    if not good:
        return None
    return (statistics.median(r.rate for r in good), statistics.median(r.cpu_us for r in good))


def report(runs: list[Run], workloads: list[str], skipped: dict[str, str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for workload in workloads:
        print(f"\n  {workload}: medians over rounds")
        print(f"    {'system':<34} {'records/s':>10} {'µs CPU/rec':>11} {'vs hand':>8} "
              f"{'CPU vs hand':>12}  runs  rounds' records/s")
        hand = medians(runs, workload, "hand")
        summary[workload] = {}
        for system in SYSTEMS[workload]:
            if system in skipped:
                print(f"    {LABEL[system]:<34} {skipped[system]}")
                summary[workload][system] = {"skipped": skipped[system]}
                continue
            mine = [r for r in runs if r.workload == workload and r.system == system]
            got = medians(runs, workload, system)
            ok = sum(r.ok for r in mine)
            if got is None:
                print(f"    {LABEL[system]:<34} {'failed':>10}  ({ok}/{len(mine)} runs correct)")
                summary[workload][system] = {"failed": [r.problems for r in mine]}
                continue
            rate, cpu = got
            vs = f"{rate / hand[0]:.2f}" if hand else "-"
            cpu_vs = f"{hand[1] / cpu:.2f}" if hand and cpu > 0 else "-"
            each = " / ".join(f"{r.rate:,.0f}" for r in mine if r.ok)
            print(f"    {LABEL[system]:<34} {rate:>10,.0f} {cpu:>11.1f} {vs:>8} {cpu_vs:>12}  "
                  f"{ok}/{len(mine)}   {each}")
            summary[workload][system] = {"rate": rate, "cpu_us": cpu,
                                         "vs_hand": rate / hand[0] if hand else None,
                                         "cpu_vs_hand": hand[1] / cpu if hand else None}
    summary["targets"] = targets(runs, workloads)
    return summary


def targets(runs: list[Run], workloads: list[str]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []

    def line(what: str, value: float | None, goal: float, unit: str = "×",
             by_cpu: float | None = None) -> None:
        verdict = "n/a" if value is None else ("PASS" if value >= goal else "MISS")
        shown = "n/a" if value is None else (f"{value:,.0f}" if unit == "rec/s"
                                            else f"{value:.2f}×")
        goal_shown = f"{goal:,.0f} rec/s" if unit == "rec/s" else f"{goal:.2f}×"
        cpu_note = "" if by_cpu is None else f"  [by CPU per record: {by_cpu:.2f}×]"
        print(f"    {what:<50} {shown:>9}  (target ≥ {goal_shown}): {verdict}{cpu_note}")
        lines.append({"target": what, "value": value, "goal": goal, "verdict": verdict,
                      "by_cpu": by_cpu})

    print("\n  targets (issues 13 and 14)")
    if "pass" in workloads:
        ms, hand = medians(runs, "pass", "millstream"), medians(runs, "pass", "hand")
        peers = [m for p in PEERS if (m := medians(runs, "pass", p))]
        line("pass-through: millstream / fastest peer",
             ms[0] / max(m[0] for m in peers) if ms and peers else None, TARGET_PEER,
             by_cpu=min(m[1] for m in peers) / ms[1] if ms and peers else None)
        line("pass-through: millstream / hand-written loop",
             ms[0] / hand[0] if ms and hand else None, TARGET_HAND,
             by_cpu=hand[1] / ms[1] if ms and hand else None)
    if "window" in workloads:
        ms, quix = medians(runs, "window", "millstream"), medians(runs, "window", "quix")
        line("tumbling-window count: millstream / Quix Streams",
             ms[0] / quix[0] if ms and quix else None, TARGET_WINDOW_VS_QUIX,
             by_cpu=quix[1] / ms[1] if ms and quix else None)
    if "io" in workloads:
        sync, asy = medians(runs, "io", "millstream"), medians(runs, "io", "millstream-async")
        line("10 ms I/O: millstream async (concurrency=64)", asy[0] if asy else None,
             TARGET_ASYNC_RATE, "rec/s")
        line("10 ms I/O: millstream async / millstream sync",
             asy[0] / sync[0] if asy and sync else None, TARGET_ASYNC_VS_SYNC)
    return lines


# -- main ----------------------------------------------------------------------------------------


def find_broker(given: str | None) -> str:
    bootstrap = given or os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        raise SystemExit("no broker: pass --kafka HOST:PORT or set MILLSTREAM_KAFKA_BOOTSTRAP")
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    except Exception as exc:  # say which broker and why
        raise SystemExit(f"the broker {bootstrap} does not answer as Kafka: {exc}") from exc
    return bootstrap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kafka", help="bootstrap HOST:PORT (default: "
                        "MILLSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--quick", action="store_true",
                        help="one round of fewer records (50,000 / 20,000 / 200 and 4,000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 1)")
    parser.add_argument("--records", type=int, help="pass-through records (default 200,000)")
    parser.add_argument("--count-records", type=int, help="count records (default 100,000)")
    parser.add_argument("--io-records", type=int,
                        help="io records for the async handlers (default 10,000)")
    parser.add_argument("--io-sync-records", type=int,
                        help="io records for the synchronous handlers (default 500)")
    parser.add_argument("--window-records", type=int,
                        help="window records (default 200,000; a multiple of 10,000)")
    parser.add_argument("--workloads", default="pass,count,io,window",
                        help="comma-separated, of pass, count, io, window (default: all)")
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--logs", type=Path,
                        help="keep each child's output in this directory (default: dropped)")
    parser.add_argument("--systems", help="comma-separated subset of hand, quix, millstream, "
                        "faststream, millstream-async (default: all)")
    args = parser.parse_args(argv)
    if Producer is None:
        raise SystemExit("confluent-kafka is not installed: pip install -e '.[bench]'")
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown workload(s) {sorted(unknown)}: choose from {list(SYSTEMS)}")
    rounds = args.rounds or (1 if args.quick else 3)
    sizes = {"pass": args.records or (50_000 if args.quick else 200_000),
             "count": args.count_records or (20_000 if args.quick else 100_000),
             "io": args.io_sync_records or (200 if args.quick else 500),
             "io-async": args.io_records or (4_000 if args.quick else 10_000),
             "window": args.window_records or (50_000 if args.quick else 200_000)}
    if sizes["window"] % WINDOW_MS:
        raise SystemExit(f"--window-records={sizes['window']} must be a multiple of "
                         f"{WINDOW_MS:,} (whole windows)")
    sizes["pass-small"], sizes["count-small"] = sizes["pass"] // 10, sizes["count"] // 10
    bootstrap = find_broker(args.kafka)

    info = {"machine": machine(), "versions": versions(), "bootstrap": bootstrap,
            "rounds": rounds, "records": sizes, "partitions": PARTITIONS, "users": USERS}
    print(f"peers benchmark on Kafka at {bootstrap}: {rounds} round(s), records {sizes}")
    m = info["machine"]
    print(f"  machine: {m['cores']} cores ({m['cpu']}), {m['platform']}, python {m['python']}")
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    skipped: dict[str, str] = {}
    for dist, system in (("quixstreams", "quix"), ("faststream", "faststream")):
        if info["versions"][dist] == "not installed":
            skipped[system] = "not installed (pip install -e '.[bench]')"
    if args.systems:
        chosen = set(args.systems.split(","))
        for system in {s for ss in SYSTEMS.values() for s in ss} - chosen:
            skipped[system] = "not chosen (--systems)"
    why = async_available()
    if why:
        skipped["millstream-async"] = why
    for system, reason in skipped.items():
        print(f"  {LABEL[system]}: {reason}")

    broker = Broker(bootstrap)
    runs: list[Run] = []
    loads: list[dict[str, Any]] = []
    try:
        sources: dict[str, tuple[str, int, int]] = {}  # name → (topic, first id, n)
        for workload in workloads:
            kinds = sorted({input_kind(workload, s) for s in SYSTEMS[workload]})
            for kind in kinds:
                topic = broker.create(f"in-{kind}")
                if kind == "window":  # one more record per user opens the next window,
                    # which closes the last full one; N counts window results
                    broker.fill(topic, 0, sizes[kind] + USERS)
                    sources[kind] = (topic, 0, window_outputs(sizes[kind]))
                else:
                    broker.fill(topic, 0, sizes[kind])
                    sources[kind] = (topic, 0, sizes[kind])
        written = {k: sizes[k] + (USERS if k == "window" else 0) for k in sources}
        print(f"  input: {', '.join(f'{k} {n:,}' for k, n in written.items())} records of "
              f"~{len(json.dumps(value_of(100_000)))} B on {PARTITIONS} partitions, "
              f"{USERS:,} keys")
        with tempfile.TemporaryDirectory(prefix="peers-logs-") as tmp:
            logs = args.logs or Path(tmp)
            logs.mkdir(parents=True, exist_ok=True)
            for rnd in range(rounds):
                before = uptime()
                print(f"\n  round {rnd + 1}: {before}", flush=True)
                for workload in workloads:
                    systems = [s for s in SYSTEMS[workload] if s not in skipped]
                    shift = rnd % len(systems)
                    for system in systems[shift:] + systems[:shift]:
                        kind = input_kind(workload, system)
                        topic, first, n = sources[kind]
                        run = run_system(broker, system, workload, rnd + 1, topic, first, n,
                                         logs)
                        runs.append(run)
                        status = "ok" if run.ok else "FAILED: " + "; ".join(run.problems)
                        if run.notes:
                            status += " (" + "; ".join(run.notes) + ")"
                        print(f"    {workload:<5} {LABEL[system]:<34} {run.rate:>9,.0f} rec/s "
                              f"{run.cpu_us:>7.1f} µs CPU/rec  wall {run.wall_s:5.1f} s, "
                              f"CPU {run.cpu_total_s:5.1f} s in all, n={n:,}  {status}",
                              flush=True)
                after = uptime()
                print(f"  round {rnd + 1} done: {after}", flush=True)
                loads.append({"round": rnd + 1, "before": before, "after": after})
        summary = report(runs, workloads, skipped)
    finally:
        broker.delete_all()
        broker.close()
    if args.json:
        args.json.write_text(json.dumps({**info, "loads": loads, "skipped": skipped,
                                         "runs": [asdict(r) for r in runs],
                                         "summary": summary}, indent=2))
        print(f"\n  written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
