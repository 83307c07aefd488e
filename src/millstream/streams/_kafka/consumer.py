"""The Kafka consumer: confluent-kafka's consumer behind millstream's ``Consumer`` Protocol.

With a group it subscribes (classic protocol, ``range`` assignment so equally partitioned
streams are co-assigned) and commits synchronously; without one it assigns itself every
partition. Offsets are never committed automatically. ``auto.offset.reset`` is ``error``:
where the group has no committed offset the adapter places the reader itself (earliest or
latest, from ``offset_reset``), and a committed offset that retention removed surfaces as
``OffsetOutOfRangeError`` instead of a silent jump. A commit for a partition this member
does not currently own is refused locally (the broker would accept it within a generation).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import (
    KafkaError,
    KafkaException,
    TopicPartition,
)

from millstream._names import check_group_name
from millstream.errors import (
    ClosedError,
    FencedError,
    InvalidRequestError,
    MillstreamError,
    OffsetOutOfRangeError,
)
from millstream.records import Record, StreamPartition
from millstream.streams._base import OffsetReset, RebalanceCallback
from millstream.streams._checks import (
    check_commit_offset,
    check_offset,
    check_poll,
    check_timestamp,
    stream_names,
)
from millstream.streams._kafka._lookups import OffsetLookups, ask_leaders
from millstream.streams._kafka.errors import error_of, translate
from millstream.streams._kafka.messages import (
    MessageBatch,
    batch_of,
    batch_one_by_one,
    records_of,
    records_one_by_one,
)
from millstream.streams._kafka.metadata import PartitionCounts
from millstream.streams._kafka.options import KafkaOptions

__all__ = ["KafkaConsumer"]

log = logging.getLogger(__name__)
T = TypeVar("T")
B = TypeVar("B", bound=Sized)

def _sp(tp: TopicPartition) -> StreamPartition:
    return StreamPartition(tp.topic, tp.partition)


class KafkaConsumer:
    """A consumer on Kafka; see ``millstream.streams._base.Consumer``."""

    def __init__(self, options: KafkaOptions, group: str | None,
                 offset_reset: OffsetReset = "earliest") -> None:
        if offset_reset not in ("earliest", "latest"):
            raise InvalidRequestError(f"offset_reset={offset_reset!r}: use 'earliest' or 'latest'")
        self._options = options
        self._group = check_group_name(group) if group is not None else None
        self._reset = offset_reset
        config = options.consumer()
        config["group.id"] = group if group is not None else f"millstream-solo-{uuid.uuid4().hex}"
        config["auto.offset.reset"] = "error"
        try:
            self._consumer = _Consumer(config)
        except KafkaException as exc:
            raise translate(exc, "creating a consumer") from exc
        self._counts = PartitionCounts(self._consumer, options.timeout_s)
        self._lookups = OffsetLookups(options)
        self._positions: dict[StreamPartition, int] = {}
        self._owned: set[StreamPartition] = set()
        self._streams: list[str] = []
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._unplaced: list[TopicPartition] | None = None  # assigned, start not yet found
        self._pending: MillstreamError | None = None  # raised by the next poll
        self._moves = 0  # assignment changes so far (rebalance callbacks run in consume())
        self._moves_seen = 0  # ... when the current poll's consume() began
        self._closed = False

    @property
    def group(self) -> str | None:
        return self._group

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this consumer is closed; open a new one")

    def _timeout(self) -> float:
        return self._options.timeout_s

    # -- subscription ----------------------------------------------------------------------

    def subscribe(self, streams: Iterable[str], *, on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None) -> None:
        self._check_open()
        names = stream_names(streams)
        counts = {name: self._counts.get(name) for name in names}
        self._streams = names
        self._on_assign, self._on_revoke = on_assign, on_revoke
        try:
            if self._group is None:
                tps = [TopicPartition(n, p) for n, c in counts.items() for p in range(c)]
                self._place(tps)
                self._consumer.assign(tps)
                self._owned = {_sp(tp) for tp in tps}
                if on_assign is not None:
                    on_assign(sorted(self._owned))
            else:
                self._consumer.subscribe(names, on_assign=self._assigned,
                                         on_revoke=self._revoked, on_lost=self._lost)
        except KafkaException as exc:
            raise translate(exc, "subscribing") from exc

    def _place(self, tps: list[TopicPartition]) -> None:
        """Set each partition's starting offset: the group's commit, else offset_reset.

        The lookups go to the group coordinator and the partitions' leaders; while a broker is
        down or leadership moves they fail for a while, so they are tried again until
        ``millstream.timeout_ms`` has passed, then a millstream error is raised.
        """
        deadline = time.monotonic() + self._timeout()
        while True:
            try:
                starts = self._starts(tps, max(deadline - time.monotonic(), 0.1))
                break
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise translate(exc, "finding where assigned partitions start") from exc
            time.sleep(0.1)
        for tp in tps:
            tp.offset = self._positions[_sp(tp)] = starts[_sp(tp)]

    def _starts(self, tps: list[TopicPartition], timeout: float) -> dict[StreamPartition, int]:
        committed: dict[StreamPartition, int] = {}
        if self._group is not None:
            for tp in self._consumer.committed(tps, timeout=timeout):
                if tp.error is not None:  # unknown, not "never committed": never guess
                    raise KafkaException(tp.error)
                if tp.offset >= 0:
                    committed[_sp(tp)] = tp.offset
        starts = {}
        for tp in tps:
            sp = _sp(tp)
            if sp in committed:
                starts[sp] = committed[sp]
                continue
            marks = self._consumer.get_watermark_offsets(tp, timeout=timeout)
            if marks is None:  # confluent-kafka's answer to a timeout
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT,
                                                f"no watermark offsets for {sp}"))
            starts[sp] = marks[0] if self._reset == "earliest" else marks[1]
        return starts

    def _assigned(self, consumer: Any, tps: list[TopicPartition]) -> None:
        self._moves += 1
        # Nothing may leave a rebalance callback: confluent-kafka would then assign the
        # partitions itself at offsets this adapter does not track (their records dropped)
        # and re-raise a C-level error from poll() as an object no except clause catches.
        # Instead take nothing yet; poll() tries again and raises the error meanwhile.
        try:
            self._place(tps)
        except MillstreamError as exc:
            consumer.unassign()
            self._unplaced, self._pending = tps, exc
            return
        self._unplaced = None
        consumer.assign(tps)
        gained = {_sp(tp) for tp in tps}
        self._owned = gained
        if self._on_assign is not None and gained:
            self._on_assign(sorted(gained))

    def _revoked(self, consumer: Any, tps: list[TopicPartition]) -> None:
        self._moves += 1
        self._unplaced = None
        lost = {_sp(tp) for tp in tps}
        if self._on_revoke is not None and lost:
            self._on_revoke(sorted(lost))
        self._drop(lost)
        consumer.unassign()

    def _lost(self, consumer: Any, tps: list[TopicPartition]) -> None:
        self._moves += 1
        self._unplaced = None
        lost = {_sp(tp) for tp in tps}
        log.warning("consumer lost partitions without revocation (session expired): %s",
                    ", ".join(map(str, sorted(lost))))
        self._drop(lost)
        consumer.unassign()

    def _drop(self, lost: set[StreamPartition]) -> None:
        self._owned -= lost
        for sp in lost:
            self._positions.pop(sp, None)

    def assignment(self) -> list[StreamPartition]:
        return sorted(self._owned)

    # -- reading ---------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        return self._poll(max_records, timeout, self._records)

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> MessageBatch:
        return self._poll(max_records, timeout, self._batch)

    def _poll(self, max_records: int, timeout: float, convert: Callable[[list[Any]], B]) -> B:
        """Wait up to ``timeout`` for messages and ``convert`` them (records or a batch)."""
        self._check_open()
        check_poll(bool(self._streams), max_records, timeout)
        if self._unplaced is not None:  # an assignment whose start lookups failed
            self._assigned(self._consumer, self._unplaced)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._moves_seen = self._moves
                messages = self._consumer.consume(max_records, 0)
                if not messages and timeout > 0:
                    while not messages:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        first = self._consumer.poll(min(left, 0.1))
                        if first is not None:
                            messages = [first, *self._consumer.consume(max_records - 1, 0)]
            except KafkaException as exc:
                raise translate(exc, "polling") from exc
            if not messages and self._pending is not None:
                pending, self._pending = self._pending, None
                raise pending
            records = convert(messages)
            # a poll that fetched only end-of-partition events waits on for its timeout
            if records or not messages or time.monotonic() >= deadline:
                return records

    def _batch(self, messages: list[Any]) -> MessageBatch:
        """The poll's ``messages`` as a batch; errors as in ``_records``."""
        owned = self._owned
        # one partition owned throughout the poll: every message is of it
        only = next(iter(owned)) if len(owned) == 1 and self._moves == self._moves_seen \
            else None
        out = batch_of(messages, self._positions, only,
                       self._streams[0] if len(self._streams) == 1 else None)
        if out is not None:
            return out
        batch, failure = batch_one_by_one(messages, self._positions, self._raise_message_error)
        if failure is not None:
            if not batch:
                raise failure
            self._pending = self._pending or failure
        return batch

    def _records(self, messages: list[Any]) -> list[Record]:
        """The poll's records (``messages``); a message's error is raised now if no record
        came, else by the next poll."""
        out = records_of(messages, self._positions)
        if out is not None:
            return out
        out, failure = records_one_by_one(messages, self._positions, self._raise_message_error)
        if failure is not None:
            if not out:
                raise failure
            self._pending = self._pending or failure
        return out

    def _raise_message_error(self, err: KafkaError, m: Any) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            # the fetcher reached the end: past transaction markers and aborted records too,
            # which occupy offsets but are never returned — so the position moves there
            sp = StreamPartition(m.topic(), m.partition())
            if sp in self._positions and m.offset() > self._positions[sp]:
                self._positions[sp] = m.offset()
            return
        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            sp = StreamPartition(m.topic(), m.partition())
            low, high = self._watermarks(sp)
            who = f"group {self._group!r}" if self._group else "this consumer"
            raise OffsetOutOfRangeError(
                f"{who} is at offset {self._positions.get(sp)} of {sp}, outside the retained "
                f"range {low}..{high}; records before {low} are gone — seek_to_beginning() to "
                f"continue from {low}, or reset the group "
                f"(`millstream groups reset {self._group or 'GROUP'} {sp.stream} --to earliest`)"
            )
        raise error_of(err, "polling")

    # -- positions ---------------------------------------------------------------------------

    def _ask(self, call: Callable[[float], T], doing: str) -> T:
        return ask_leaders(call, doing, self._timeout())

    def _watermarks(self, sp: StreamPartition) -> tuple[int, int]:
        return self._ask(lambda timeout: self._lookups.watermarks([sp], timeout)[sp],
                         f"reading the offsets of {sp}")

    def _offsets(self, partitions: list[StreamPartition], which: Literal["first", "end"]
                 ) -> dict[StreamPartition, int]:
        """The first or end offset of each partition, in one lookup."""
        if not partitions:
            return {}
        return self._ask(lambda timeout: self._lookups.offsets(partitions, which, timeout),
                         f"reading the offsets of {', '.join(map(str, partitions))}")

    def _owned_list(self, partitions: Iterable[StreamPartition] | None) -> list[StreamPartition]:
        self._check_open()
        if partitions is None:
            return sorted(self._owned)
        out = []
        for sp in partitions:
            sp = StreamPartition(*sp)
            if sp not in self._owned:
                raise InvalidRequestError(
                    f"{sp} is not assigned to this consumer (it owns "
                    f"{', '.join(map(str, sorted(self._owned))) or 'nothing'})"
                )
            out.append(sp)
        return out

    def _seek(self, sp: StreamPartition, offset: int) -> None:
        try:
            self._consumer.seek(TopicPartition(sp.stream, sp.partition, offset))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise translate(exc, f"seeking {sp}") from exc
            # a partition whose fetch stopped on an error (e.g. its offset fell below the
            # retained start) refuses seek(); assigning it again at the offset restarts it
            self._positions[sp] = offset
            try:
                self._consumer.assign([TopicPartition(o.stream, o.partition, self._positions[o])
                                       for o in sorted(self._owned)])
            except KafkaException as again:
                raise translate(again, f"seeking {sp}") from again
        if offset >= 0:
            self._positions[sp] = offset

    def position(self, partition: StreamPartition) -> int:
        sp = self._owned_list([partition])[0]
        return self._positions[sp]

    def seek(self, partition: StreamPartition, offset: int) -> None:
        sp = self._owned_list([partition])[0]
        check_offset(offset, sp)
        low, high = self._watermarks(sp)
        if not low <= offset <= high:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {sp}'s retained range {low}..{high} (the end, "
                f"{high}, is where the next record will go); seek within it"
            )
        self._seek(sp, offset)

    def seek_to_beginning(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        for sp, offset in self._offsets(self._owned_list(partitions), "first").items():
            self._seek(sp, offset)

    def seek_to_end(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        for sp, offset in self._offsets(self._owned_list(partitions), "end").items():
            self._seek(sp, offset)

    def seek_to_timestamp(self, timestamp_ms: int,
                          partitions: Iterable[StreamPartition] | None = None) -> None:
        check_timestamp(timestamp_ms)
        targets = self._owned_list(partitions)
        found = self._ask(
            lambda timeout: self._consumer.offsets_for_times(
                [TopicPartition(sp.stream, sp.partition, timestamp_ms) for sp in targets],
                timeout=timeout),
            "seeking by time")
        for tp in found:
            sp = _sp(tp)
            self._seek(sp, tp.offset if tp.offset >= 0 else self._watermarks(sp)[1])

    def lag(self) -> dict[StreamPartition, int]:
        self._check_open()
        ends = self._offsets(sorted(self._owned), "end")
        return {sp: max(end - self._positions[sp], 0) for sp, end in ends.items()}

    # -- offsets ---------------------------------------------------------------------------

    def committed(self, partitions: Iterable[StreamPartition] | None = None
                  ) -> dict[StreamPartition, int | None]:
        self._check_open()
        wanted = [StreamPartition(*sp) for sp in partitions] if partitions is not None \
            else sorted(self._owned)
        if self._group is None or not wanted:
            return dict.fromkeys(wanted)
        try:
            tps = self._consumer.committed(
                [TopicPartition(sp.stream, sp.partition) for sp in wanted],
                timeout=self._timeout())
        except KafkaException as exc:
            raise translate(exc, "reading committed offsets") from exc
        return {_sp(tp): (tp.offset if tp.offset >= 0 else None) for tp in tps}

    def commit(self, offsets: Mapping[StreamPartition, int] | None = None) -> None:
        self._check_open()
        if self._group is None:
            raise InvalidRequestError(
                "this consumer has no group, so it cannot commit; open it with group=..."
            )
        if offsets is None:
            chosen = {sp: self._positions[sp] for sp in self._owned if sp in self._positions}
        else:
            chosen = {}
            for sp, off in offsets.items():
                sp = StreamPartition(*sp)
                chosen[sp] = check_commit_offset(off, sp)
        lost = sorted(set(chosen) - self._owned)
        if lost:
            raise FencedError(
                f"group {self._group!r} moved {', '.join(map(str, lost))} to another member; "
                "this consumer can no longer commit for them (nothing was committed) — poll "
                "again to get the current assignment"
            )
        if not chosen:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(sp.stream, sp.partition, off)
                         for sp, off in chosen.items()],
                asynchronous=False)
        except KafkaException as exc:
            raise translate(exc, f"committing offsets for group {self._group!r}") from exc

    # -- lifecycle -------------------------------------------------------------------------

    def group_metadata(self) -> Any:
        """The group generation for a transaction's ``send_offsets_to_transaction``."""
        self._check_open()
        if self._group is None:
            raise InvalidRequestError("a consumer without a group cannot commit in a transaction")
        try:
            return self._consumer.consumer_group_metadata()
        except KafkaException as exc:
            raise translate(exc, f"reading group {self._group!r}'s metadata") from exc

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._group is None and self._on_revoke is not None and self._owned:
                self._on_revoke(sorted(self._owned))
            self._consumer.close()  # a group member's on_revoke runs in here, and may commit
        except KafkaException as exc:
            raise translate(exc, "closing the consumer") from exc
        finally:
            self._closed = True

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
