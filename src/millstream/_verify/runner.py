"""One verify run: a scratch stream, workers killed and restarted at random, broker kills
when a test cluster is named, the group drained, a final read from the start, the analysis.

After ``seconds`` the faults stop and the producers are stopped; the consumers then get up to
``DRAIN_S`` to commit the end of every partition before they are stopped too, so that every
stored record should have reached the group. The scratch stream (``verify-<time>-<random>``)
is deleted in a ``finally``, whatever happened (a failure, SIGINT, SIGTERM, SIGHUP); every
worker is stopped and every broker killed here restarted before that, with the stop signals
held back (``signals``). An interrupted run raises ``Interrupted``, saying whether the stream
is gone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import millstream
from millstream._verify.analysis import Verdict, analyse
from millstream._verify.brokers import TestCluster
from millstream._verify.fleet import Exit, Fleet
from millstream._verify.history import read_history
from millstream._verify.signals import StopSignals
from millstream._verify.workers import GROUP_SUFFIX, read_all
from millstream.errors import ConfigError, MillstreamError, UnknownStreamError
from millstream.streams._base import Streams

__all__ = ["DRAIN_S", "RUN_FILE", "AckCounter", "Interrupted", "Outcome", "Plan", "Tick",
           "reanalyse", "run", "scratch_name"]

log = logging.getLogger(__name__)

#: What a run records about itself next to the histories (for ``reanalyse``).
RUN_FILE = "run.json"
#: How long workers get to stop cleanly (pending acknowledgements, leaving the group).
STOP_GRACE_S = 15.0
#: A killed broker stays down for a random time in this range.
BROKER_DOWN_S = (1.0, 5.0)
#: How long the consumers get, once producers stopped, to commit the end of every partition
#: (a member SIGKILLed just before holds its partitions until its session times out).
DRAIN_S = 90.0


class Interrupted(Exception):
    """A stop signal ended the run early; every worker was stopped, and ``deleted`` says
    whether the scratch ``stream`` is gone (None: it was never created)."""

    def __init__(self, stream: str, deleted: bool | None) -> None:
        super().__init__(f"interrupted; scratch stream {stream!r} deleted: {deleted}")
        self.stream = stream
        self.deleted = deleted


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run: backend, length, workers, faults, where histories go, the random seed."""

    url: str
    home: Path
    history: Path
    seconds: float = 60.0
    producers: int = 3
    consumers: int = 3
    partitions: int = 6
    kill_every: float = 2.0
    broker_every: float = 15.0
    cluster: TestCluster | None = None
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Tick:
    """Progress while the workers run."""

    elapsed: float
    acked: int
    kills: int
    broker_kills: int
    phase: str = "faults"  # then "draining": producers stopped, the group reading to the end


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened in a run and what the analysis found."""

    stream: str
    seconds: float
    verdict: Verdict
    process_kills: dict[str, int]
    broker_kills: int
    exits: tuple[Exit, ...]
    history: Path
    deleted: bool = True


def scratch_name() -> str:
    return f"verify-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


@dataclass
class AckCounter:
    """Counts acknowledgements in the history files as they grow (for the progress bar)."""

    folder: Path
    acked: int = 0
    _read: dict[Path, int] = field(default_factory=dict)

    def update(self) -> int:
        for path in self.folder.glob("*.jsonl"):
            start = self._read.get(path, 0)
            with open(path, "rb") as f:
                f.seek(start)
                chunk = f.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._read[path] = start + len(whole)
            self.acked += whole.count(b'{"op":"ack"')
        return self.acked


@dataclass
class _Brokers:
    """The broker-kill schedule: one node at a time is down or starting again; the next kill
    is drawn once the restarted node serves."""

    cluster: TestCluster
    rng: random.Random
    every: float
    kills: int = 0
    next_kill: float = 0.0
    down: int | None = None
    back_at: float = 0.0
    starting: int | None = None

    def step(self, now: float) -> None:
        if self.down is not None:
            if now >= self.back_at:
                log.info("restarting broker node %s", self.down + 1)
                self.cluster.restart(self.down)
                self.down, self.starting = None, self.down
        elif self.starting is not None:
            if self.cluster.started(self.starting):
                self.starting = None
                self.next_kill = now + self.rng.expovariate(1 / self.every)
        elif now >= self.next_kill:
            node = self.rng.randrange(self.cluster.nodes)
            log.info("killing broker node %s", node + 1)
            self.cluster.kill(node)
            self.kills += 1
            self.down, self.back_at = node, now + self.rng.uniform(*BROKER_DOWN_S)


def _drive(plan: Plan, fleet: Fleet, counter: AckCounter,
           on_tick: Callable[[Tick], None]) -> tuple[float, int]:
    """Run the workers for ``plan.seconds`` with kills; return elapsed seconds, broker kills."""
    rng = random.Random(plan.seed)
    for slot in range(plan.producers):
        fleet.start("producer", slot)
    for slot in range(plan.consumers):
        fleet.start("consumer", slot)
    brokers = None
    if plan.cluster is not None:
        brokers = _Brokers(plan.cluster, rng, plan.broker_every)
        brokers.next_kill = rng.expovariate(1 / plan.broker_every)
    t0 = time.monotonic()
    next_kill = rng.expovariate(1 / plan.kill_every) if plan.kill_every > 0 else float("inf")
    elapsed = 0.0
    while elapsed < plan.seconds:
        time.sleep(0.1)
        elapsed = time.monotonic() - t0
        fleet.restart_exited()
        if elapsed >= next_kill and fleet.workers:
            fleet.kill_and_restart(rng.choice(fleet.workers))
            next_kill = elapsed + rng.expovariate(1 / plan.kill_every)
        if brokers is not None:
            brokers.step(elapsed)
        on_tick(Tick(min(elapsed, plan.seconds), counter.update(), sum(fleet.kills.values()),
                     brokers.kills if brokers else 0))
    return elapsed, brokers.kills if brokers else 0


def _drain(plan: Plan, fleet: Fleet, streams: Streams, stream: str, last: Tick,
           on_tick: Callable[[Tick], None]) -> None:
    """Stop the producers, heal the cluster, and let the consumers read and commit to the end
    of every partition (at most ``DRAIN_S``); then stop them."""
    fleet.stop(STOP_GRACE_S, role="producer")
    if plan.cluster is not None:
        plan.cluster.heal()
    admin = streams.admin()
    ends = {p.partition: p.end for p in admin.describe_stream(stream).partitions}
    deadline = time.monotonic() + DRAIN_S
    behind: dict[int, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        fleet.restart_exited()
        try:
            group = admin.describe_group(stream + GROUP_SUFFIX)
        except MillstreamError as exc:
            log.info("waiting for the group to drain: %s", exc)
        else:
            committed = {lag.partition: lag.committed or 0 for lag in group.partitions
                         if lag.stream == stream}
            behind = {p: (committed.get(p, 0), end) for p, end in ends.items()
                      if committed.get(p, 0) < end}
            if not behind:
                break
        on_tick(dataclasses.replace(last, phase="draining"))
        time.sleep(0.5)
    else:
        log.warning("the group did not commit the end of every partition within %.0f s "
                    "(partition: committed, end): %s", DRAIN_S, behind)
    fleet.stop(STOP_GRACE_S)


def _delete(streams: Streams, stream: str) -> bool:
    """Delete the scratch stream; True once it is gone."""
    try:
        streams.admin().delete_stream(stream)
    except UnknownStreamError:
        return True  # never created (interrupted first)
    except Exception:
        log.warning("could not delete the scratch stream %r; delete it with: "
                    "millstream streams delete %s", stream, stream, exc_info=True)
        return False
    return True


def _clean_up(plan: Plan, fleet: Fleet, streams: Streams, stream: str) -> bool:
    """Stop every worker, restart every broker killed here, delete the scratch stream; True if
    it is gone."""
    fleet.kill_all()
    if plan.cluster is not None:
        try:
            plan.cluster.heal()
        except Exception:
            log.warning("could not restart the brokers verify killed", exc_info=True)
        plan.cluster.close()
    return _delete(streams, stream)


def run(plan: Plan, on_tick: Callable[[Tick], None] = lambda tick: None) -> Outcome:
    """Carry out ``plan`` and analyse its histories (kept in ``plan.history``); raises
    ``Interrupted`` after a stop signal, once everything is cleaned up."""
    env = {k: v for k, v in os.environ.items() if k != "MILLSTREAM_FAULT"}
    env["MILLSTREAM_HOME"] = str(plan.home)
    stream = scratch_name()
    plan.history.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(plan.url, stream, plan.history, env)
    deleted: bool | None = None  # None: the stream was not created (yet)
    try:
        with StopSignals() as signals, millstream.open_streams(plan.url) as streams:
            deleted = False
            try:
                streams.admin().create_stream(stream, plan.partitions)
                counter = AckCounter(plan.history)
                elapsed, broker_kills = _drive(plan, fleet, counter, on_tick)
                last = Tick(min(elapsed, plan.seconds), counter.update(),
                            sum(fleet.kills.values()), broker_kills)
                _drain(plan, fleet, streams, stream, last, on_tick)
                read_all(plan.url, stream, plan.history / "reader.jsonl")
                histories = [read_history(p) for p in sorted(plan.history.glob("*.jsonl"))]
                verdict = analyse(histories)
            finally:
                with signals.cleaning_up():
                    deleted = _clean_up(plan, fleet, streams, stream)
    except KeyboardInterrupt:
        fleet.kill_all()
        raise Interrupted(stream, deleted) from None
    outcome = Outcome(stream, elapsed, verdict, dict(fleet.kills), broker_kills,
                      tuple(fleet.exits), plan.history, bool(deleted))
    (plan.history / RUN_FILE).write_text(json.dumps({
        "stream": stream, "seconds": elapsed, "process_kills": outcome.process_kills,
        "broker_kills": broker_kills, "exits": [dataclasses.asdict(e) for e in fleet.exits],
    }) + "\n")
    return outcome


def reanalyse(folder: Path) -> Outcome:
    """Analyse the histories a run kept in ``folder`` again (``--history DIR``), e.g. after
    looking into them; raises ``ConfigError`` if ``folder`` holds no run."""
    try:
        meta = json.loads((folder / RUN_FILE).read_text())
        exits = tuple(Exit(str(e["name"]), int(e["returncode"]), str(e["last_line"]))
                      for e in meta["exits"])
        histories = [read_history(p) for p in sorted(folder.glob("*.jsonl"))]
    except FileNotFoundError as exc:
        raise ConfigError(f"{folder} holds no verify run ({exc.filename} is missing); give the "
                          "--history DIR of a finished run") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder} holds a damaged verify run: {exc}") from exc
    return Outcome(str(meta["stream"]), float(meta["seconds"]), analyse(histories),
                   {str(k): int(v) for k, v in meta["process_kills"].items()},
                   int(meta["broker_kills"]), exits, folder)
