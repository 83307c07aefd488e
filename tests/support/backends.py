"""Backends under test for the contract suites: how to reach each and its time bounds."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import millstream
from millstream import Producer, Retention, Streams

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
    bootstrap: str | None = None  # Kafka's, for what the Protocols cannot ask for
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

    def refusing_stream(self, producer: Producer) -> tuple[str, bytes]:
        """A stream and a value that ``producer`` accepts at the call but the backend
        refuses to store: on Kafka, a record over the stream's own ``max.message.bytes``
        (2,000, below millstream's limit); on the embedded log, any record for a stream
        deleted after ``producer`` learned it."""
        if self.bootstrap is not None:
            from confluent_kafka.admin import AdminClient, NewTopic

            name = f"refusing-{uuid.uuid4().hex[:10]}"
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for future in admin.create_topics([NewTopic(name, 1, 1, config={
                    "max.message.bytes": "2000"})]).values():
                future.result(60)
            deadline = time.monotonic() + 30  # until a fresh client knows its leader
            while time.monotonic() < deadline:
                meta = admin.list_topics(name, timeout=10).topics.get(name)
                if meta is not None and meta.error is None and meta.partitions and all(
                        p.leader >= 0 for p in meta.partitions.values()):
                    break
                time.sleep(0.1)
            return name, b"x" * 5_000
        name = self.new_stream(prefix="refusing")
        producer.write(name, b"learn the stream")
        producer.flush(30)
        self.open().admin().delete_stream(name)
        return name, b"refused"

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
        rebalance_s=15.0, session_s=6.0, bootstrap=bootstrap,
    )
