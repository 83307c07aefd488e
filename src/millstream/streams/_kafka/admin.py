"""The Kafka admin: topics as streams (create, list, describe, delete) and consumer groups.

Creation and deletion are asynchronous in Kafka; these calls wait until the cluster's
metadata shows the change, so a stream is usable (or gone) when they return. Retention maps
to topic configs: ``retention.ms``, ``retention.bytes`` (per partition, as in the embedded
log), ``cleanup.policy=compact`` and ``delete.retention.ms`` for tombstones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from millstream._names import check_group_name, check_stream_name
from millstream.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    MillstreamError,
    NotFoundError,
    OperationTimeoutError,
    UnknownStreamError,
)
from millstream.records import StreamPartition
from millstream.streams._checks import (
    ResetTo,
    check_reset_partitions,
    check_reset_target,
    reset_offset_for,
)
from millstream.streams._info import (
    GroupInfo,
    MemberInfo,
    PartitionInfo,
    PartitionLag,
    Retention,
    StreamInfo,
    to_ms,
)
from millstream.streams._kafka.errors import error_of, translate
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["KafkaAdmin"]

T = TypeVar("T")
MAX_PARTITIONS = 10_000
# a group request answered with these is asked again: its coordinator is loading (a broker
# just started) or moving, and answers within moments
_COORDINATOR_BUSY = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                               KafkaError.COORDINATOR_NOT_AVAILABLE})


class KafkaAdmin:
    """Admin operations on Kafka; see ``millstream.streams._base.Admin``."""

    def __init__(self, client: AdminClient, options: KafkaOptions) -> None:
        self._client = client
        self._options = options

    def _result(self, future: Future[T], doing: str) -> T:
        try:
            return future.result(timeout=self._options.timeout_s)
        except KafkaException as exc:
            raise translate(exc, doing) from exc
        except TimeoutError as exc:
            raise OperationTimeoutError(
                f"Kafka did not answer within {self._options.timeout_s} s while {doing}; "
                "check the brokers, or raise millstream.timeout_ms"
            ) from exc

    def _group_result(self, request: Callable[[], Future[T]], doing: str) -> T:
        """``_result`` of a group request, made again while the group's coordinator is
        loading or moving (a fresh broker answers NOT_COORDINATOR for a while), until
        ``millstream.timeout_ms``; any other error at once."""
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            try:
                return self._result(request(), doing)
            except MillstreamError as exc:
                cause = exc.__cause__
                busy = (isinstance(cause, KafkaException) and bool(cause.args)
                        and isinstance(cause.args[0], KafkaError)
                        and cause.args[0].code() in _COORDINATOR_BUSY)
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def _wait_until(self, check: Callable[[], bool], doing: str) -> None:
        deadline = time.monotonic() + self._options.timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise OperationTimeoutError(f"Kafka did not finish {doing} in time")
            time.sleep(0.05)

    def _topics(self) -> dict[str, Any]:
        try:
            meta = self._client.list_topics(timeout=self._options.timeout_s)
        except KafkaException as exc:
            raise translate(exc, "listing streams") from exc
        return {name: t for name, t in meta.topics.items() if not name.startswith("__")}

    def create_stream(self, name: str, partitions: int = 1,
                      retention: Retention | None = None) -> StreamInfo:
        check_stream_name(name)
        if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidRequestError(
                f"partitions={partitions!r} for stream {name!r}: give an integer from 1 to "
                f"{MAX_PARTITIONS}"
            )
        r = retention or Retention()
        config = {
            "retention.ms": str(to_ms(r.max_age) if r.max_age is not None else -1),
            "retention.bytes": str(r.max_bytes if r.max_bytes is not None else -1),
            "cleanup.policy": "compact" if r.compact else "delete",
            "delete.retention.ms": str(to_ms(r.tombstone_age)),
            # the broker's default (1,048,588 bytes, framing included) is below a record of
            # max_record_bytes: the stream takes what the producer accepts
            "max.message.bytes": str(self._options.batch_bytes),
        }
        topic = NewTopic(name, num_partitions=partitions,
                         replication_factor=self._options.replication_factor, config=config)
        # Fresh metadata first: librdkafka sends CreateTopics to the controller it has cached,
        # and if that broker died, every create only times out until something refreshes it.
        self._topics()
        futures = self._client.create_topics([topic], request_timeout=self._options.timeout_s)
        try:
            self._result(futures[name], f"creating stream {name!r}")
        except MillstreamError as exc:
            if isinstance(exc, AlreadyExistsError):
                raise AlreadyExistsError(
                    f"stream {name!r} already exists; use ensure_stream to accept that, "
                    "or delete it first"
                ) from exc
            raise
        # Brokers learn of the new topic one after the other: until each has, one that has not
        # answers as if it did not exist. It was just created, so that is settling, not absence.
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            if self._ready(name, partitions):
                try:
                    return self.describe_stream(name)
                except NotFoundError:  # UnknownStreamError, or UNKNOWN_TOPIC_OR_PART
                    pass
            if time.monotonic() > deadline:
                raise OperationTimeoutError(f"Kafka did not finish creating stream {name!r} "
                                            f"within {self._options.timeout_s} s")
            time.sleep(0.05)

    def _ready(self, name: str, partitions: int) -> bool:
        topic = self._topics().get(name)
        return topic is not None and len(topic.partitions) == partitions and all(
            p.leader >= 0 for p in topic.partitions.values())

    def ensure_stream(self, name: str, partitions: int = 1,
                      retention: Retention | None = None) -> StreamInfo:
        try:
            return self.create_stream(name, partitions, retention)
        except AlreadyExistsError:
            return self.describe_stream(name)

    def list_streams(self) -> list[str]:
        return sorted(self._topics())

    def describe_stream(self, name: str) -> StreamInfo:
        check_stream_name(name)
        topic = self._topics().get(name)
        if topic is None:
            raise UnknownStreamError(name)
        tps = [TopicPartition(name, p) for p in sorted(topic.partitions)]
        starts = self._offsets(tps, OffsetSpec.earliest(), f"describing stream {name!r}")
        ends = self._offsets(tps, OffsetSpec.latest(), f"describing stream {name!r}")
        resource = ConfigResource(ResourceType.TOPIC, name)
        configs = self._result(self._client.describe_configs([resource])[resource],
                               f"reading the configuration of stream {name!r}")

        def number(key: str) -> int | None:
            entry = configs.get(key)
            value = int(entry.value) if entry is not None and entry.value is not None else -1
            return value if value > 0 else None

        policy = configs.get("cleanup.policy")
        max_age_ms = number("retention.ms")
        retention = Retention(
            max_age=None if max_age_ms is None else max_age_ms / 1000,
            max_bytes=number("retention.bytes"),
            compact="compact" in (policy.value if policy is not None else ""),
            tombstone_age=(number("delete.retention.ms") or 0) / 1000,
        )
        return StreamInfo(
            name=name,
            partitions=tuple(PartitionInfo(tp.partition, starts[tp.partition],
                                           ends[tp.partition]) for tp in tps),
            retention=retention,
        )

    def _offsets(self, tps: list[TopicPartition], spec: OffsetSpec, doing: str) -> dict[int, int]:
        """Each partition's offset per ``spec``; retried while leadership settles (a new
        topic answers NOT_LEADER for a moment after its metadata already shows a leader, and
        on several brokers UNKNOWN_TOPIC_OR_PART from a leader that has not yet learnt of it —
        retried while the metadata still lists the topic).

        After a partition's leader died, librdkafka's ListOffsets keeps asking that leader
        from its metadata cache until the request times out, then answers OFFSET_INVALID
        (-1001) with no error. So each attempt is short, such an answer counts as a failure,
        and the metadata is refreshed before the next attempt."""
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            left = max(deadline - time.monotonic(), 0.1)
            futures = self._client.list_offsets({tp: spec for tp in tps},
                                                request_timeout=min(left, 5.0))
            try:
                found = {tp.partition: int(self._result(f, doing).offset)
                         for tp, f in futures.items()}
                unknown = sorted(p for p, offset in found.items() if offset < 0)
                if not unknown:
                    return found
                if time.monotonic() > deadline:
                    raise OperationTimeoutError(
                        f"Kafka gave no offset for partition(s) {unknown} of "
                        f"{tps[0].topic!r} within {self._options.timeout_s} s while {doing}; "
                        "check that their leaders are up, or raise millstream.timeout_ms")
            except MillstreamError as exc:
                settling = exc.retriable or (isinstance(exc, NotFoundError) and {
                    tp.topic for tp in tps} <= set(self._topics()))
                if not settling or time.monotonic() > deadline:
                    raise
            for topic in {tp.topic for tp in tps}:  # fresh leaders into the metadata cache
                try:
                    self._client.list_topics(topic, timeout=min(left, 5.0))
                except KafkaException:
                    continue  # the next attempt reports what is wrong
            time.sleep(0.05)

    def delete_stream(self, name: str) -> None:
        check_stream_name(name)
        # The controller decides whether the topic exists: a broker's metadata may not show
        # a stream created a moment ago on another broker yet.
        futures = self._client.delete_topics([name], operation_timeout=self._options.timeout_s)
        try:
            self._result(futures[name], f"deleting stream {name!r}")
        except NotFoundError as exc:
            raise UnknownStreamError(name) from exc
        self._wait_until(lambda: name not in self._topics(), f"deleting stream {name!r}")

    def list_groups(self) -> list[str]:
        result = self._result(self._client.list_consumer_groups(), "listing groups")
        return sorted(g.group_id for g in result.valid
                      if not g.group_id.startswith("millstream-solo-"))

    def describe_group(self, group: str) -> GroupInfo:
        check_group_name(group)
        described = self._group_result(
            lambda: self._client.describe_consumer_groups([group])[group],
            f"describing group {group!r}")
        offsets = self._group_result(
            lambda: self._client.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)])[group],
            f"reading the offsets of group {group!r}")
        committed = {StreamPartition(tp.topic, tp.partition): tp.offset
                     for tp in offsets.topic_partitions or [] if tp.offset >= 0}
        owner: dict[StreamPartition, str] = {}
        members = []
        for m in described.members:
            parts = tuple(sorted(StreamPartition(tp.topic, tp.partition)
                                 for tp in (m.assignment.topic_partitions if m.assignment else [])))
            for sp in parts:
                owner[sp] = m.member_id
            members.append(MemberInfo(member_id=m.member_id, client=f"{m.host} {m.client_id}",
                                      streams=tuple(sorted({sp.stream for sp in parts})),
                                      partitions=parts))
        touched = sorted(set(committed) | set(owner))
        tps = [TopicPartition(sp.stream, sp.partition) for sp in touched]
        ranges: dict[StreamPartition, tuple[int, int]] = {}
        doing = f"reading the ends of group {group!r}'s partitions"
        for stream in sorted({sp.stream for sp in touched}):
            mine = [tp for tp in tps if tp.topic == stream]
            starts = self._offsets(mine, OffsetSpec.earliest(), doing)
            ends = self._offsets(mine, OffsetSpec.latest(), doing)
            for tp in mine:
                ranges[StreamPartition(stream, tp.partition)] = (starts[tp.partition],
                                                                 ends[tp.partition])
        return GroupInfo(
            name=group, members=tuple(members),
            partitions=tuple(
                PartitionLag(stream=sp.stream, partition=sp.partition,
                             committed=committed.get(sp), end=ranges[sp][1],
                             owner=owner.get(sp), start=ranges[sp][0])
                for sp in touched),
        )

    def reset_offsets(self, group: str, stream: str,
                      to: ResetTo) -> dict[StreamPartition, int]:
        check_group_name(group)
        check_reset_target(group, to)
        info = self.describe_stream(stream)
        described = self._group_result(
            lambda: self._client.describe_consumer_groups([group])[group],
            f"describing group {group!r}")
        if described.members:
            raise InvalidRequestError(
                f"group {group!r} has {len(described.members)} live member(s); stop them "
                "before resetting its offsets"
            )
        check_reset_partitions(stream, to, len(info.partitions))
        chosen = {StreamPartition(stream, p.partition): reset_offset_for(
            stream, p.partition, p.start, p.end, to) for p in info.partitions}
        self._alter_offsets(group, chosen)
        return chosen

    def _alter_offsets(self, group: str, offsets: dict[StreamPartition, int]) -> None:
        """Commit ``offsets`` for ``group`` (a group that does not exist yet is created, as
        Kafka's own tools do). Kafka answers per partition: any partition it refused is
        raised — a missing stream or partition as ``NotFoundError`` naming it — never returned
        as applied. Refusals that pass (a coordinator still loading or moving) are retried
        until ``millstream.timeout_ms``."""
        doing = f"resetting group {group!r}"
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(sp.stream, sp.partition, off) for sp, off in offsets.items()])
        deadline = time.monotonic() + self._options.timeout_s
        while True:
            answer = self._result(self._client.alter_consumer_group_offsets([request])[group],
                                  doing)
            refused = [tp for tp in answer.topic_partitions or [] if tp.error is not None]
            if not refused:
                return
            tp = refused[0]
            where = f"{tp.topic}[{tp.partition}]"
            error = error_of(tp.error, f"{doing} on {where}")
            if tp.error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                raise NotFoundError(f"group {group!r} does not exist; its offsets on {where} "
                                    "were not reset") from KafkaException(tp.error)
            if isinstance(error, NotFoundError):
                raise NotFoundError(f"stream {tp.topic!r} has no partition {tp.partition} (it "
                                    f"was deleted, or is not there yet); group {group!r} was not "
                                    f"reset on it") from KafkaException(tp.error)
            if not error.retriable or time.monotonic() > deadline:
                raise error from KafkaException(tp.error)
            time.sleep(0.1)
