"""Turning a Kafka poll's messages into records, and moving the consumer's positions past
them: column by column in C (``map`` over the messages, ``tuple.__new__``: no per-record
Python frame) when no message is an error and every partition is still owned; else one by
one, keeping every record of the batch (librdkafka will not hand them out again) and
reporting the first error."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any

from confluent_kafka import KafkaError, Message

from millstream.errors import MillstreamError
from millstream.records import Record, StreamPartition

__all__ = ["records_of", "records_one_by_one"]

_new = tuple.__new__
# Message accessors as plain functions, for map() over a whole poll's messages in C.
_error, _topic, _partition, _offset, _timestamp, _key, _value, _headers = (
    Message.error, Message.topic, Message.partition, Message.offset, Message.timestamp,
    Message.key, Message.value, Message.headers)
_second = itemgetter(1)
_is_not_none = partial(is_not, None)  # by identity: KafkaError's == fails against None


def records_of(messages: list[Any], positions: dict[StreamPartition, int]) -> list[Record] | None:
    """The records of ``messages`` built column by column, each partition's position moved
    past its last; ``None`` (nothing moved) when the messages must go one by one: none came,
    one is an error, or a partition is no longer owned (not in ``positions``)."""
    if not messages or any(map(_is_not_none, map(_error, messages))):
        return None
    topics: list[Any] = list(map(_topic, messages))
    partitions: list[Any] = list(map(_partition, messages))
    offsets: list[Any] = list(map(_offset, messages))
    # each partition's last offset; most polls hold one partition only
    topic, partition = topics[0], partitions[0]
    if partitions.count(partition) == len(partitions) and topics.count(topic) == len(topics):
        last = {(topic, partition): offsets[-1]}
    else:
        last = dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))
    if any(tp not in positions for tp in last):
        return None  # a rebalance took a partition away
    headers = list(map(_headers, messages))
    out: list[Record] = list(map(_new, repeat(Record), zip(
        topics, partitions, offsets, map(_second, map(_timestamp, messages)),
        map(_key, messages), map(_value, messages),
        [tuple(h) if h else () for h in headers] if any(map(_is_not_none, headers))
        else repeat(()), strict=False)))
    for (topic, partition), offset in last.items():
        positions[StreamPartition(topic, partition)] = offset + 1
    return out


def records_one_by_one(messages: list[Any], positions: dict[StreamPartition, int],
                       raise_error: Callable[[KafkaError, Any], None]
                       ) -> tuple[list[Record], MillstreamError | None]:
    """The records of ``messages`` of partitions still owned, each position moved past its
    record, and the first ``MillstreamError`` that ``raise_error`` raised for an error
    message (it returns for one that is no error, such as the end of a partition)."""
    out: list[Record] = []
    failure: MillstreamError | None = None
    for m in messages:
        err = m.error()
        if err is not None:
            try:
                raise_error(err, m)
            except MillstreamError as exc:
                failure = failure or exc
            continue
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        sp = StreamPartition(topic, partition)
        if sp not in positions:
            continue  # fetched before a rebalance took the partition away
        headers = m.headers()
        out.append(_new(Record, (topic, partition, offset, m.timestamp()[1], m.key(),
                                 m.value(), tuple(headers) if headers else ())))
        positions[sp] = offset + 1
    return out, failure
