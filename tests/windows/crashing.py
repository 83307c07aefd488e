"""Running ``tests.windows.crash_app`` in child processes that die at a named fault point,
then to the end, and reading back what it left: the harness of the crash tests, for any
streams backend."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from millstream import Streams
from millstream._wellknown import EXCEPTIONS
from millstream.faults import FAULT_EXIT_CODE
from millstream.runtime._failures import parse_exception
from millstream.service import WindowRow
from millstream.tables import Tables
from tests.support.children import REPO
from tests.support.logread import read_all
from tests.support.waiting import wait_until
from tests.windows.apps import Click
from tests.windows.reference import Expected, Item, expected_windows

GROUP = "wcrash{suffix}.counts"


def traffic(n: int, seed: int = 7) -> list[Click]:
    """``n`` clicks of 12 users: event time mostly rising, 1 in 5 up to 40 s behind (some
    of them late), 1 in 20 sent twice."""
    rng = random.Random(seed)
    out: list[Click] = []
    for i in range(n):
        t = i * 100 - (rng.randrange(40_000) if rng.random() < 0.2 else 0)
        click = Click(user=f"u{rng.randrange(12)}", at=max(t, 0) / 1000,
                      amount=rng.randrange(1, 10))
        out += [click] * (2 if rng.random() < 0.05 else 1)
    return out


def reference(sent: list[Click]) -> Expected:
    from tests.windows.crash_app import SETTINGS

    settings = dict(SETTINGS)
    return expected_windows([Item(c.user, round(c.at * 1000), c.amount) for c in sent],
                            partitions=2, **settings)  # type: ignore[arg-type]


@dataclass
class Child:
    """Starts ``millstream run tests.windows.crash_app:app counts`` with these settings."""

    tmp_path: Path
    streams_url: str
    tables_url: str
    suffix: str
    processing: str = "exactly-once"
    runs: int = 0
    #: seconds each record takes (``crash_app.SLOW_S``)
    slow_s: float = 0.0003

    @property
    def log(self) -> Path:
        return self.tmp_path / "service.log"

    def start(self, fault: str | None, instance: int = 0) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", ""))
                                            if p)
        env.update(MILLSTREAM_STREAMS=self.streams_url, MILLSTREAM_TABLES=self.tables_url,
                   MILLSTREAM_HOME=str(self.tmp_path / "home"), WINDOWS_SUFFIX=self.suffix,
                   WINDOWS_PROCESSING=self.processing, WINDOWS_SLOW_S=str(self.slow_s))
        env.pop("MILLSTREAM_FAULT", None)
        if fault:
            env["MILLSTREAM_FAULT"] = fault
        self.runs += 1
        with open(self.log, "ab") as sink:
            sink.write(f"\n--- run {self.runs} (fault {fault}, instance {instance}) ---\n"
                       .encode())
            sink.flush()
            return subprocess.Popen(
                [sys.executable, "-m", "millstream", "run", "tests.windows.crash_app:app",
                 "counts", "--metrics-interval", "0.5", "--instance-index", str(instance)],
                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def committed(streams: Streams, suffix: str) -> int:
    info = streams.admin().describe_group(GROUP.format(suffix=suffix))
    return sum(p.committed or 0 for p in info.partitions if p.stream == f"clicks{suffix}")


def member_ids(streams: Streams, suffix: str) -> set[str]:
    return {m.member_id for m in streams.admin().describe_group(GROUP.format(suffix=suffix))
            .members}


def a_new_member_holds_every_partition(streams: Streams, suffix: str, earlier: set[str],
                                       ) -> bool:
    """Whether a member of the group not in ``earlier`` holds every partition of the input
    (any backend: a member id is new at each join)."""
    stream = f"clicks{suffix}"
    info = streams.admin().describe_group(GROUP.format(suffix=suffix))
    every = {p.partition for p in info.partitions if p.stream == stream}
    return any(m.member_id not in earlier
               and {sp.partition for sp in m.partitions if sp.stream == stream} == every
               for m in info.members)


def send(streams: Streams, suffix: str, sent: list[Click]) -> None:
    from tests.windows.crash_app import app

    with app.open_writer(streams) as writer:
        for click in sent:
            writer.send(f"clicks{suffix}", click, key=click.user)


def crash_then_finish(child: Child, streams: Streams, tables: Tables, fault: str,
                      total: int, deaths: int = 3, timeout: float = 180) -> int:
    """Run the service dying at ``fault`` up to ``deaths`` times (while input is left), then
    to the end of its input and its table caught up, then stop it; the number of deaths."""
    died = 0
    for _ in range(deaths if fault else 0):
        if committed(streams, child.suffix) >= total:
            break
        proc = child.start(fault)
        try:
            code = proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        if code != FAULT_EXIT_CODE:
            assert code == 0 or committed(streams, child.suffix) >= total, child.tail()
            break
        died += 1
    earlier = member_ids(streams, child.suffix)  # every earlier run is dead by now
    proc = child.start(None)
    try:
        def finished() -> bool:
            assert proc.poll() is None, child.tail()
            return (committed(streams, child.suffix) >= total
                    and a_new_member_holds_every_partition(streams, child.suffix, earlier))
        # every input is committed, and with it (in its transaction, or before its
        # checkpoint) the rows of the windows it changed; a clean stop then applies what the
        # table lacks (after the commit that stop makes). The last run must hold the
        # partitions first: when the one before it had committed every input, a stop sent at
        # once came while it was still importing, before its SIGTERM handler (exit -15)
        wait_until(finished, timeout, "the service to commit every input")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, child.tail()
    return died


def join_mid_run(child: Child, streams: Streams, total: int, timeout: float = 180) -> int:
    """Run one instance; once it has committed some input but not a third, start a second
    one (the group rebalances: a partition moves with its open windows); run both to the
    end and stop them. The number of inputs committed when the second joined."""
    group = GROUP.format(suffix=child.suffix)
    first = child.start(None, instance=0)
    second = None
    try:
        wait_until(lambda: committed(streams, child.suffix) > 0, timeout,
                   "the first instance to commit")
        at_join = committed(streams, child.suffix)
        second = child.start(None, instance=1)
        wait_until(lambda: len(streams.admin().describe_group(group).members) == 2
                   and all(m.partitions for m in streams.admin().describe_group(group).members),
                   timeout, "both instances to hold a partition")
        wait_until(lambda: committed(streams, child.suffix) >= total, timeout,
                   "the two instances to commit every input")
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            if proc is not None:
                assert proc.wait(60) == 0, child.tail()
    return at_join


def outcome(streams: Streams, tables: Tables, suffix: str
            ) -> tuple[dict[str, dict[str, object]], list[dict[str, object]],
                       list[tuple[int, int]]]:
    """The window table, the results (sorted by key and start) and the late records'
    (partition, offset), as readers of committed records see them."""
    table = dict(tables.table(f"counts{suffix}").scan(limit=None))
    results = sorted((WindowRow.model_validate_json(r.value or b"").model_dump()
                      for r in read_all(streams, f"results{suffix}")),
                     key=lambda r: (r["key"], r["start"]))
    group = GROUP.format(suffix=suffix)
    late = sorted((e.input["partition"], e.input["offset"])
                  for r in read_all(streams, EXCEPTIONS)
                  if (e := parse_exception(r)) is not None and e.group == group)
    return table, results, late
