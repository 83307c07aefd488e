"""Topic metadata the adapter needs at call time (does it exist, how many partitions), cached."""

from __future__ import annotations

import threading
from typing import Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import ClusterMetadata

from millstream._names import check_stream_name
from millstream.errors import UnknownStreamError
from millstream.streams._kafka.errors import translate

__all__ = ["PartitionCounts"]


class _HasListTopics(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata: ...


class PartitionCounts:
    """Partition counts per topic, looked up once through a client's metadata request."""

    def __init__(self, client: _HasListTopics, timeout_s: float) -> None:
        self._client = client
        self._timeout = timeout_s
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> int:
        """The partition count of ``name``; ``UnknownStreamError`` if there is no such topic."""
        count = self._counts.get(name)
        if count is not None:
            return count
        check_stream_name(name)
        try:
            meta = self._client.list_topics(name, timeout=self._timeout)
        except KafkaException as exc:
            raise translate(exc, f"looking up stream {name!r}") from exc
        topic = meta.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            raise UnknownStreamError(name)
        with self._lock:
            self._counts[name] = len(topic.partitions)
        return len(topic.partitions)

    def forget(self, name: str) -> None:
        with self._lock:
            self._counts.pop(name, None)
