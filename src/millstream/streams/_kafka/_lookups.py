"""A Kafka consumer's offset lookups (a partition's first and end offsets), on a connection
of their own, and ``ask_leaders``, which retries a lookup while a leader is unreachable.

On the consumer's own connection a lookup queues behind the fetch in flight, and the broker
holds a fetch that finds nothing new for ``fetch.wait.max.ms`` (500 ms by default): a
consumer that had caught up waited that long for each partition it sought or measured the
lag of. An admin client of the consumer's own (made at its first lookup, with the handle's
connection settings) asks the partitions' leaders directly, many partitions in one request,
at the consumer's isolation level — so the end is the one the consumer reads up to (the last
stable offset under ``read_committed``, librdkafka's default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, TypeVar

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from millstream.errors import UnavailableError
from millstream.records import StreamPartition
from millstream.streams._kafka.errors import translate
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["OffsetLookups", "ask_leaders"]

T = TypeVar("T")

#: what librdkafka answers, without an error, for a partition whose leader did not respond
_NO_ANSWER = -1001


class OffsetLookups:
    """First and end offsets of partitions, asked on a client separate from the consumer's."""

    def __init__(self, options: KafkaOptions) -> None:
        self._options = options
        self._isolation = (IsolationLevel.READ_UNCOMMITTED
                           if options.client.get("isolation.level") == "read_uncommitted"
                           else IsolationLevel.READ_COMMITTED)
        self._client: AdminClient | None = None
        self._stale: set[str] = set()  # streams whose last lookup failed

    def _admin(self) -> AdminClient:
        if self._client is None:
            config: dict[str, str | int | float | bool] = dict(self._options.common())
            self._client = AdminClient(config)
        return self._client

    def offsets(self, partitions: list[StreamPartition], which: Literal["first", "end"],
                timeout: float) -> dict[StreamPartition, int]:
        """Each partition's first or end offset; raises ``KafkaException`` when a leader
        does not answer within ``timeout`` seconds."""
        return self._results(self._request(partitions, which, timeout), timeout)

    def watermarks(self, partitions: list[StreamPartition],
                   timeout: float) -> dict[StreamPartition, tuple[int, int]]:
        """Each partition's (first, end) offsets, both asked at once."""
        first = self._request(partitions, "first", timeout)
        end = self._request(partitions, "end", timeout)
        lows, highs = self._results(first, timeout), self._results(end, timeout)
        return {sp: (lows[sp], highs[sp]) for sp in partitions}

    def _request(self, partitions: list[StreamPartition], which: Literal["first", "end"],
                 timeout: float) -> dict[TopicPartition, Future[Any]]:
        spec = OffsetSpec.earliest() if which == "first" else OffsetSpec.latest()
        if self._stale:  # within this attempt's time
            started = time.monotonic()
            self._refresh(timeout)
            timeout = max(timeout - (time.monotonic() - started), 0.1)
        try:
            return self._admin().list_offsets(
                {TopicPartition(sp.stream, sp.partition): spec for sp in partitions},
                isolation_level=self._isolation, request_timeout=timeout)
        except ValueError as exc:  # confluent-kafka's refusal of its arguments
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, str(exc))) from exc

    def _results(self, futures: dict[TopicPartition, Future[Any]],
                 timeout: float) -> dict[StreamPartition, int]:
        found: dict[StreamPartition, int] = {}
        try:
            for tp, future in futures.items():
                try:
                    offset = int(future.result(timeout=timeout + 1.0).offset)
                except FutureTimeout:
                    raise KafkaException(KafkaError(
                        KafkaError._TIMED_OUT, f"no offset for {tp.topic}[{tp.partition}] "
                        f"within {timeout:.1f} s")) from None
                if offset == _NO_ANSWER:
                    raise KafkaException(KafkaError(
                        KafkaError._TIMED_OUT,
                        f"the leader of {tp.topic}[{tp.partition}] gave no offset"))
                found[StreamPartition(tp.topic, tp.partition)] = offset
        except KafkaException:
            self._stale.update(tp.topic for tp in futures)
            raise
        return found

    def _refresh(self, timeout: float) -> None:
        """Before asking again after a failed lookup, fresh leaders into the client's metadata
        cache: after a leader died, librdkafka keeps asking it, from the cache, until the
        request times out."""
        while self._stale:
            topic = self._stale.pop()
            try:
                self._admin().list_topics(topic, timeout=min(timeout, 5.0))
            except KafkaException:
                continue  # the lookup that follows reports what is wrong


#: what librdkafka answers for a partition whose leader it cannot reach
_LEADER_GONE = {KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
                KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.NOT_LEADER_FOR_PARTITION}


def ask_leaders(call: Callable[[float], T], doing: str, timeout_s: float) -> T:
    """``call(timeout)`` — a lookup at the partitions' leaders — tried again until
    ``timeout_s`` (``millstream.timeout_ms``) has passed while it fails for a reason that
    passes. With its leader down librdkafka calls an owned partition "unknown" at once; that
    is no ``NotFoundError`` but a broker that cannot be reached, and is raised as such."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call(max(deadline - time.monotonic(), 0.1))
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) \
                else None
            error = translate(exc, doing)
            if code not in _LEADER_GONE and not error.retriable:
                raise error from exc
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"Kafka did not answer within {timeout_s:g} s while {doing} "
                    f"({exc.args[0].str() if code is not None else exc}): the partition's "
                    "leader is down or the stream was deleted — check the brokers are up "
                    "and reachable") from exc
        time.sleep(0.1)
