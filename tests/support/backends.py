"""Backends under test for the contract suites: how to reach each and its time bounds."""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import millstream
from millstream import Retention, Streams

_counter = itertools.count()


@dataclass
class BackendUnderTest:
    """One streams backend as the contract suite sees it.

    ``rebalance_s`` bounds how long a partition may take to move to another member after one
    joins, leaves or is killed; ``session_s`` is the group's liveness timeout.
    """

    name: str
    url: str
    rebalance_s: float
    session_s: float
    _opened: list[Streams] = field(default_factory=list)

    def open(self) -> Streams:
        streams = millstream.open_streams(self.url)
        self._opened.append(streams)
        return streams

    def new_stream(self, partitions: int = 1, retention: Retention | None = None,
                   prefix: str = "s") -> str:
        name = f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        self.open().admin().create_stream(name, partitions, retention)
        return name

    def new_group(self) -> str:
        return f"g-{uuid.uuid4().hex[:10]}"

    def close(self) -> None:
        for s in self._opened:
            s.close()


def local_backend(directory: Path) -> BackendUnderTest:
    return BackendUnderTest(
        name="local", url=f"local:{directory}", rebalance_s=8.0, session_s=3.0,
    )


def kafka_backend(bootstrap: str) -> BackendUnderTest:
    """Kafka at ``bootstrap`` (``host:port[,host:port…]``).

    A classic-protocol consumer's session timeout cannot go below the broker's
    ``group.min.session.timeout.ms`` (6 s); a killed member's partitions move after that
    plus a heartbeat and a rejoin round, which ``rebalance_s`` bounds.
    """
    return BackendUnderTest(
        name="kafka",
        url=f"kafka://{bootstrap}?session.timeout.ms=6000&heartbeat.interval.ms=1000",
        rebalance_s=15.0, session_s=6.0,
    )
