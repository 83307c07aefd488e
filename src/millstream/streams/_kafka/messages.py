"""Turning a Kafka poll's messages into records or a batch, and moving the consumer's
positions past them: column by column in C (``map`` over the messages, ``tuple.__new__``: no
per-record Python frame) when no message is an error and every partition is still owned;
else one by one, keeping every record of the poll (librdkafka will not hand them out again)
and reporting the first error. A ``MessageBatch`` keeps the messages themselves and makes a
``Record`` only when one is asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any

from confluent_kafka import KafkaError, Message

from millstream.errors import MillstreamError
from millstream.records import Headers, Position, Record, StreamPartition

__all__ = ["MessageBatch", "batch_of", "batch_one_by_one", "records_of", "records_one_by_one"]

_new = tuple.__new__
# Message accessors as plain functions, for map() over a whole poll's messages in C.
_ACCESSORS: tuple[Any, ...] = (
    Message.error, Message.topic, Message.partition, Message.offset, Message.timestamp,
    Message.key, Message.value, Message.headers)
_error, _topic, _partition, _offset, _timestamp, _key, _value, _headers = _ACCESSORS
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


def _kept(messages: list[Any], positions: dict[StreamPartition, int],
          raise_error: Callable[[KafkaError, Any], None]
          ) -> tuple[list[Any], dict[StreamPartition, int], MillstreamError | None]:
    """The messages of ``messages`` that are records of partitions still owned, each
    position moved past its record, the positions they end at, and the first
    ``MillstreamError`` that ``raise_error`` raised for an error message (it returns for one
    that is no error, such as the end of a partition)."""
    kept: list[Any] = []
    ends: dict[StreamPartition, int] = {}
    failure: MillstreamError | None = None
    for m in messages:
        err = m.error()
        if err is not None:
            try:
                raise_error(err, m)
            except MillstreamError as exc:
                failure = failure or exc
            continue
        sp = StreamPartition(m.topic(), m.partition())
        if sp not in positions:
            continue  # fetched before a rebalance took the partition away
        kept.append(m)
        positions[sp] = ends[sp] = m.offset() + 1
    for sp in ends:  # an end-of-partition event may have moved a position further
        ends[sp] = positions.get(sp, ends[sp])
    return kept, ends, failure


def records_one_by_one(messages: list[Any], positions: dict[StreamPartition, int],
                       raise_error: Callable[[KafkaError, Any], None]
                       ) -> tuple[list[Record], MillstreamError | None]:
    """The records of ``messages`` of partitions still owned (see ``_kept``), and the first
    error."""
    kept, _, failure = _kept(messages, positions, raise_error)
    return list(map(_record, kept)), failure


def batch_one_by_one(messages: list[Any], positions: dict[StreamPartition, int],
                     raise_error: Callable[[KafkaError, Any], None]
                     ) -> tuple[MessageBatch, MillstreamError | None]:
    """``records_one_by_one`` as a ``MessageBatch``."""
    kept, ends, failure = _kept(messages, positions, raise_error)
    return MessageBatch(kept, ends), failure


def _record(m: Any) -> Record:
    headers = m.headers()
    return _new(Record, (m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(),
                         m.value(), tuple(headers) if headers else ()))


def _last_offsets(messages: list[Any], topic: str | None) -> dict[tuple[str, int], int]:
    """Each partition's last offset in ``messages``, all of ``topic`` if it is given; most
    polls hold one partition only."""
    partitions: list[Any] = list(map(_partition, messages))
    partition = partitions[0]
    if partitions.count(partition) == len(partitions):
        if topic is None:
            topics: list[Any] = list(map(_topic, messages))
            if topics.count(topics[0]) == len(topics):
                topic = topics[0]
        if topic is not None:
            return {(topic, partition): messages[-1].offset()}
    elif topic is not None:
        last = dict(zip(partitions, map(_offset, messages), strict=True))
        return {(topic, p): offset for p, offset in last.items()}
    return dict(zip(zip(map(_topic, messages), partitions, strict=True),
                    map(_offset, messages), strict=True))


def batch_of(messages: list[Any], positions: dict[StreamPartition, int],
             only: StreamPartition | None = None, topic: str | None = None
             ) -> MessageBatch | None:
    """``messages`` as a batch, each partition's position moved past its last; ``None``
    (nothing moved) when they must go one by one: none came, one is an error, or a
    partition is no longer owned. The caller knows more in two cases: ``only``, the one
    partition it owned throughout the poll (so every message is of it); ``topic``, the one
    stream it reads."""
    # a KafkaError is always true (it defines neither __bool__ nor __len__), None false
    if not messages or any(map(_error, messages)):
        return None
    if only is not None:
        ends = {only: messages[-1].offset() + 1}
    else:
        last = _last_offsets(messages, topic)
        if any(tp not in positions for tp in last):
            return None  # a rebalance took a partition away
        ends = {}
        for (name, partition), offset in last.items():
            ends[StreamPartition(name, partition)] = offset + 1
    positions.update(ends)
    return MessageBatch(messages, ends)


class MessageBatch:
    """A ``RecordBatch`` (``millstream.streams._base``) over a poll's confluent-kafka
    ``Message``s, none of them an error: a column is one ``map`` of a ``Message`` accessor
    in C; iteration and indexing make ``Record``s as they go."""

    __slots__ = ("_ends", "_messages")

    def __init__(self, messages: list[Any], ends: dict[StreamPartition, int]) -> None:
        self._messages = messages
        self._ends = ends

    def __len__(self) -> int:
        return len(self._messages)

    def __bool__(self) -> bool:
        return bool(self._messages)

    def __iter__(self) -> Iterator[Record]:
        ms = self._messages
        return map(_new, repeat(Record), zip(
            map(_topic, ms), map(_partition, ms), map(_offset, ms),
            map(_second, map(_timestamp, ms)), map(_key, ms), map(_value, ms),
            self.headers() if any(map(_is_not_none, map(_headers, ms))) else repeat(()),
            strict=False))

    def __getitem__(self, index: int) -> Record:
        return _record(self._messages[index])

    def __repr__(self) -> str:
        return f"<MessageBatch of {len(self._messages)} records, ends {self._ends}>"

    def values(self) -> list[bytes | None]:
        return list(map(_value, self._messages))

    def keys(self) -> list[bytes | None]:
        return list(map(_key, self._messages))

    def headers(self) -> list[Headers]:
        ms = self._messages
        if not any(map(_is_not_none, map(_headers, ms))):
            return [()] * len(ms)
        return [tuple(h) if h else () for h in map(_headers, ms)]

    def timestamps(self) -> list[int]:
        return list(map(_second, map(_timestamp, self._messages)))

    def streams(self) -> list[str]:
        return list(map(_topic, self._messages))

    def partitions(self) -> list[int]:
        return list(map(_partition, self._messages))

    def offsets(self) -> list[int]:
        return list(map(_offset, self._messages))

    def positions(self) -> list[Position]:
        ms = self._messages
        return list(map(_new, repeat(Position), zip(
            map(_topic, ms), map(_partition, ms), map(_offset, ms), strict=True)))

    def ends(self) -> dict[StreamPartition, int]:
        return dict(self._ends)
