"""The streams interface every backend implements: producer, consumer, admin.

These Protocols are the whole contract; ``tests/contracts/`` tests backends through them
only. What each method promises (ordering, idempotence, what it raises) is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from millstream.records import Headers, Position, Record, StreamPartition
from millstream.streams._info import (
    GroupInfo,
    MemberInfo,
    PartitionInfo,
    PartitionLag,
    Retention,
    StreamInfo,
)

__all__ = [
    "Admin",
    "BatchHandle",
    "Consumer",
    "GroupInfo",
    "MemberInfo",
    "OffsetReset",
    "PartitionInfo",
    "PartitionLag",
    "Producer",
    "RebalanceCallback",
    "RecordBatch",
    "Retention",
    "SendHandle",
    "StreamInfo",
    "Streams",
    "SupportsTransactions",
    "TransactionalProducer",
]

OffsetReset = Literal["earliest", "latest"]
RebalanceCallback = Callable[[list[StreamPartition]], None]


class SendHandle(Protocol):
    """The acknowledgement of one sent record; resolves once the record is durably stored."""

    def done(self) -> bool:
        """True once the record is stored or failed; never blocks."""
        ...

    def wait(self, timeout: float | None = None) -> Position:
        """Block until the record is stored and return where it is.

        Raises ``DeliveryError`` if it could not be stored, ``OperationTimeoutError`` if
        ``timeout`` seconds pass first (the record may still be stored later).
        """
        ...


class BatchHandle(Protocol):
    """The acknowledgement of a batch sent with ``send_batch``."""

    def done(self) -> bool:
        """True once every record of the batch is stored or the batch failed."""
        ...

    def wait(self, timeout: float | None = None) -> list[Position]:
        """Block until every record is stored; return their positions in the order sent."""
        ...


class RecordBatch(Protocol):
    """The records one ``Consumer.poll_batch`` returned, made only when touched.

    A batch reads like a sequence of ``Record`` (``len``, ``bool``, iteration, ``batch[i]``),
    but a backend keeps what its read gave (Kafka's messages, the embedded log's records) and
    builds a ``Record`` only when one is asked for. The column calls build no ``Record``: each
    returns a new list with one entry per record, in the batch's order — the cheap way to pass
    records through. Within a partition, records come in offset order.
    """

    def __len__(self) -> int: ...

    def __bool__(self) -> bool: ...

    def __iter__(self) -> Iterator[Record]: ...

    def __getitem__(self, index: int) -> Record:
        """The record at ``index`` (negative counts from the end); ``IndexError`` past it."""
        ...

    def values(self) -> list[bytes | None]:
        """Each record's value (``None`` for a tombstone)."""
        ...

    def keys(self) -> list[bytes | None]:
        """Each record's key."""
        ...

    def headers(self) -> list[Headers]:
        """Each record's headers (``()`` for none)."""
        ...

    def timestamps(self) -> list[int]:
        """Each record's timestamp, in milliseconds since the epoch."""
        ...

    def streams(self) -> list[str]:
        """Each record's stream."""
        ...

    def partitions(self) -> list[int]:
        """Each record's partition."""
        ...

    def offsets(self) -> list[int]:
        """Each record's offset."""
        ...

    def positions(self) -> list[Position]:
        """Each record's ``Position``."""
        ...

    def ends(self) -> dict[StreamPartition, int]:
        """For each partition with a record in the batch, the offset ``commit()`` would store
        for it right after this poll: past its last record here (and past any offsets the
        read skipped, such as Kafka's transaction markers). Committing these marks the whole
        batch as processed."""
        ...


class Producer(Protocol):
    """Appends records to streams.

    ``send``, ``send_batch``, ``write`` and ``write_batch`` return at once; records sent by one
    producer to one partition are stored in the order sent, whichever call sent them. A record is
    *acknowledged* once its handle resolved or a later ``flush()`` returned; an acknowledged
    record is never lost. A record over the size
    limit raises ``RecordTooLargeError`` at the call, and nothing of it is sent. Sending to a
    stream that does not exist raises ``UnknownStreamError``.
    """

    def send(
        self,
        stream: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp: int | None = None,
    ) -> SendHandle:
        """Queue one record. The partition is ``partition`` if given, else the key's murmur2
        partition, else one chosen by the producer (records without a key spread over
        partitions in batches)."""
        ...

    def send_batch(
        self,
        stream: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> BatchHandle:
        """Queue many records at once (the cheap path). ``keys`` and ``headers``, when given,
        have one entry per value. Either every record is accepted or, if one is invalid,
        none is."""
        ...

    def write(
        self,
        stream: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Queue one record, as ``send`` does, without a handle (the cheapest path).

        The arguments, the partition chosen and the checks at the call (``RecordTooLargeError``,
        ``UnknownStreamError``, ``InvalidRequestError``, ``ClosedError``) are ``send``'s. The
        record is acknowledged by the next ``flush()`` that returns; a flush raises
        ``DeliveryError``, naming how many records failed and the first error, if any record
        written since the previous flush could not be stored."""
        ...

    def write_batch(
        self,
        stream: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        """``send_batch`` without a handle: the same arguments, partitions and checks (every
        record accepted, or none if one is invalid); acknowledged by the next ``flush()``
        as ``write``'s records are."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record sent before the call is acknowledged; raise
        ``DeliveryError`` if any could not be stored. Each thread's flushes report a failed
        record once, whichever thread sent it: the thread that wrote it hears of it even if
        another thread's flush did first."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Flush and release resources; idempotent."""
        ...

    def __enter__(self) -> Producer: ...

    def __exit__(self, *exc_info: object) -> None: ...


class Consumer(Protocol):
    """Reads records from streams, alone or as a member of a consumer group.

    With a group, each partition of the subscribed streams is owned by one live member at a
    time; partitions move when members join, leave or stop heartbeating. A member that lost a
    partition can no longer commit for it (``FencedError``). Without a group, the consumer
    reads every partition and cannot commit. Within a partition, records come in offset order.
    Reading from an offset below the retained start raises ``OffsetOutOfRangeError``.
    """

    @property
    def group(self) -> str | None: ...

    def subscribe(
        self,
        streams: Iterable[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Start reading ``streams``. ``on_revoke`` runs inside ``poll`` before partitions are
        given up (commit there); ``on_assign`` after new ones are taken."""
        ...

    def assignment(self) -> list[StreamPartition]:
        """The partitions this consumer currently owns, sorted."""
        ...

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Return up to ``max_records`` records, waiting up to ``timeout`` seconds for the
        first. Advances the consumer's position past what it returns."""
        ...

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> RecordBatch:
        """``poll``, returning a ``RecordBatch`` instead of a list: the same records, the same
        waiting, rebalance callbacks and errors, and the position advanced past the batch.
        Its records are made only when touched; ``ends()`` is what a commit would store."""
        ...

    def commit(self, offsets: Mapping[StreamPartition, int] | None = None) -> None:
        """Durably record the group's progress: by default the position after the last
        record returned by ``poll`` on each owned partition; else the given next offsets."""
        ...

    def committed(
        self, partitions: Iterable[StreamPartition] | None = None
    ) -> dict[StreamPartition, int | None]:
        """The group's committed next offsets (None where never committed)."""
        ...

    def position(self, partition: StreamPartition) -> int:
        """The offset of the next record ``poll`` returns for ``partition``."""
        ...

    def seek(self, partition: StreamPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next; it must lie in the retained range."""
        ...

    def seek_to_beginning(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        """Read from the first retained record (of every owned partition by default)."""
        ...

    def seek_to_end(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        """Read only records written from now on."""
        ...

    def seek_to_timestamp(
        self, timestamp_ms: int, partitions: Iterable[StreamPartition] | None = None
    ) -> None:
        """Read from the first record whose timestamp is ≥ ``timestamp_ms`` (the end if none)."""
        ...

    def lag(self) -> dict[StreamPartition, int]:
        """Per owned partition: records between this consumer's position and the end."""
        ...

    def close(self) -> None:
        """Leave the group (its partitions move at once) and release resources; idempotent."""
        ...

    def __enter__(self) -> Consumer: ...

    def __exit__(self, *exc_info: object) -> None: ...


class Admin(Protocol):
    """Creates, inspects and deletes streams; inspects consumer groups."""

    def create_stream(
        self, name: str, partitions: int = 1, retention: Retention | None = None
    ) -> StreamInfo:
        """Create a stream. Raises ``AlreadyExistsError`` if it exists."""
        ...

    def ensure_stream(
        self, name: str, partitions: int = 1, retention: Retention | None = None
    ) -> StreamInfo:
        """Create the stream unless it exists; return its description either way."""
        ...

    def list_streams(self) -> list[str]:
        """Names of all streams, sorted."""
        ...

    def describe_stream(self, name: str) -> StreamInfo:
        """Partitions, retained offsets and retention. Raises ``UnknownStreamError``."""
        ...

    def delete_stream(self, name: str) -> None:
        """Delete a stream, its records and its groups' offsets. Raises ``UnknownStreamError``."""
        ...

    def list_groups(self) -> list[str]:
        """Names of consumer groups that have members or committed offsets, sorted."""
        ...

    def describe_group(self, group: str) -> GroupInfo:
        """Members, and committed offset and lag for every partition the group has touched."""
        ...

    def reset_offsets(
        self, group: str, stream: str,
        to: Literal["earliest", "latest"] | int | Mapping[int, int],
    ) -> dict[StreamPartition, int]:
        """Set the group's committed offsets for every partition of the stream; refused with
        InvalidRequestError while the group has live members, as Kafka does.

        ``to`` is ``"earliest"`` (each partition's retained start), ``"latest"`` (its end), an
        offset, or a mapping of every partition number to its offset (for a reset by time);
        offsets must lie in their partition's retained range (start..end), else
        ``OffsetOutOfRangeError`` naming the range and nothing is changed. Returns the offsets
        set — only once they are committed: a partition the backend refuses raises (a missing
        stream or partition as ``NotFoundError`` naming it). A group that does not exist yet
        is created with these offsets, as Kafka's own tools do. Raises
        ``UnknownStreamError`` if the stream does not exist, and changes nothing.
        """
        ...


class TransactionalProducer(Protocol):
    """Records and a consumer group's offsets that become visible together, or not at all.

    ``send`` adds a record to the open transaction (it needs a key or a partition); nothing is
    visible to readers until ``commit(consumer, offsets)`` stores every record sent since the
    last commit together with ``consumer``'s group offsets. If the consumer lost one of those
    partitions, or the process dies first, neither is stored (``FencedError`` for the first).
    ``abort`` drops the open transaction. Readers of the output never see aborted records.
    """

    def send(self, stream: str, value: bytes | None, *, key: bytes | None = None,
             partition: int | None = None, headers: Headers | None = None) -> None: ...

    def commit(self, consumer: Consumer, offsets: Mapping[StreamPartition, int]) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class SupportsTransactions(Protocol):
    """A backend that can commit outputs and input offsets atomically (exactly-once)."""

    def open_transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        """A producer for one consume-transform-produce loop; ``transactional_id`` names it
        stably across restarts of the same instance (a backend may fence older holders)."""
        ...


class Streams(Protocol):
    """An open streams backend: the factory for producers, consumers and the admin.

    A handle may be shared between threads (the video site's request threads share one):
    ``admin()`` and its calls may come from any thread at once. The embedded log runs them
    one at a time, each transaction whole (``tests/streams/test_admin_threads.py``).
    """

    @property
    def url(self) -> str: ...

    def admin(self) -> Admin: ...

    def open_producer(self) -> Producer:
        """A new producer; use it with ``with`` or call ``close()``."""
        ...

    def open_consumer(
        self, group: str | None = None, *, offset_reset: OffsetReset = "earliest"
    ) -> Consumer:
        """A new consumer in ``group`` (or standalone when None). ``offset_reset`` applies to
        partitions the group never committed."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Streams: ...

    def __exit__(self, *exc_info: object) -> None: ...
