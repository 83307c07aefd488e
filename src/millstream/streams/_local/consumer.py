"""The embedded log's consumer: reads batches, follows its group, commits with fencing.

``poll`` reads the batch rows past each owned partition's position, checks their CRC and
turns them into records (``tuple.__new__`` over columns: no per-record Python frame). When
nothing is new it sleeps until a writer rings its streams' or its group's doorbell
(``_wakeup``, inotify on Linux); where it cannot be woken, it polls ``PRAGMA data_version``
(changed by another connection's commit) every 0.2 ms growing to 1 ms, and every
``IDLE_SLEEP_S`` once nothing came for ``IDLE_AFTER_S``. A heartbeat thread with its own
connection keeps the member's lease (``membership``); the polling thread applies assignment
changes between polls. Batch rows become records in ``fetch``; the commit's fenced write is
``groups.commit_offsets``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from millstream._names import check_group_name
from millstream.errors import (
    ClosedError,
    CorruptDataError,
    InvalidRequestError,
    MillstreamError,
    OffsetOutOfRangeError,
)
from millstream.faults import fault_point
from millstream.records import Record, StreamPartition
from millstream.streams._base import OffsetReset, RebalanceCallback
from millstream.streams._batch import RecordList, ends_of
from millstream.streams._checks import (
    check_commit_offset,
    check_offset,
    check_poll,
    check_timestamp,
    stream_names,
)
from millstream.streams._local import catalog, fetch, groups
from millstream.streams._local._offsets import commit_as_member, committed_offsets
from millstream.streams._local._wakeup import Wakeup
from millstream.streams._local.db import LocalOptions, connect, translate
from millstream.streams._local.membership import Membership

__all__ = ["LocalConsumer"]

log = logging.getLogger(__name__)
_REFRESH_S = 0.01
_RANGE_CHECK_S = 1.0
#: after this long without a record, an idle poll checks for new data every IDLE_SLEEP_S
IDLE_AFTER_S = 1.0
IDLE_SLEEP_S = 0.005


class LocalConsumer:
    """A consumer on the embedded log; see ``millstream.streams._base.Consumer``."""

    def __init__(self, path: Path, options: LocalOptions, group: str | None,
                 offset_reset: OffsetReset = "earliest") -> None:
        if offset_reset not in ("earliest", "latest"):
            raise InvalidRequestError(
                f"offset_reset={offset_reset!r}: use 'earliest' or 'latest'"
            )
        self._path = path
        self._options = options
        self._group = check_group_name(group) if group is not None else None
        self._reset = offset_reset
        self._conn = connect(path, options)
        self._wakeup = Wakeup(path, options.wakeup)
        self._membership = Membership(path, options, self._group) if self._group else None
        self._owned_member: str | None = None  # the membership the positions were taken in
        self._streams: list[str] = []
        self._metas: dict[int, catalog.StreamMeta] = {}
        self._owned: list[groups.Slot] = []
        self._positions: dict[groups.Slot, int] = {}
        #: a batch read past what a poll wanted: its records, the next index, its end offset
        self._buffers: dict[groups.Slot, fetch.Rest] = {}
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._version = -2
        self._refreshed_at = 0.0
        self._ranges_at = 0.0
        self._rr = 0
        self._quiet_since: float | None = None  # when polls last started coming back empty
        self._closed = False

    # -- helpers -----------------------------------------------------------------------------

    def _sp(self, slot: groups.Slot) -> StreamPartition:
        return StreamPartition(self._metas[slot[0]].name, slot[1])

    def _slot(self, sp: StreamPartition, *, owned: bool = True) -> groups.Slot:
        """The slot of ``sp``; with ``owned``, it must be assigned to this consumer."""
        if not isinstance(sp, tuple) or len(sp) != 2:
            raise InvalidRequestError(
                f"{sp!r} is not a StreamPartition(stream, partition)"
            )
        for sid, meta in self._metas.items():
            if meta.name == sp[0]:
                slot = (sid, sp[1])
                if slot in self._positions or (not owned and 0 <= sp[1] < meta.partitions):
                    return slot
        raise InvalidRequestError(
            f"{sp[0]}[{sp[1]}] is not assigned to this consumer (it owns "
            f"{', '.join(str(p) for p in self.assignment()) or 'nothing'})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this consumer is closed; open a new one")

    def _error(self, exc: sqlite3.Error, doing: str) -> MillstreamError:
        return translate(exc, self._path, doing)

    @property
    def group(self) -> str | None:
        return self._group

    # -- subscription and assignment ----------------------------------------------------------

    def subscribe(self, streams: Iterable[str], *, on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None) -> None:
        self._check_open()
        names = stream_names(streams)
        try:
            metas = [catalog.require(self._conn, n) for n in names]
        except sqlite3.Error as exc:
            raise self._error(exc, "subscribing") from exc
        if self._streams:
            self._leave()
        self._metas = {m.id: m for m in metas}
        self._streams = names
        self._wakeup.watch(self._metas, self._group)  # before the first look for records
        self._on_assign, self._on_revoke = on_assign, on_revoke
        if self._membership is None:
            self._set_owned({(m.id, p) for m in metas for p in range(m.partitions)}, set())
            return
        try:
            self._membership.join(self._conn, names)
        except sqlite3.Error as exc:
            raise self._error(exc, f"joining group {self._group!r}") from exc
        self._version = -2
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        """Apply assignment changes: release revoked partitions, take gained ones."""
        if self._group is None or self._membership is None:
            return
        now = time.monotonic()
        if not force and now - self._refreshed_at < _REFRESH_S:
            return
        self._refreshed_at = now
        member_id = self._membership.member_id
        if member_id is None:
            return
        if member_id != self._owned_member:
            # the heartbeat rejoined under a new id after this member expired: every partition
            # it held is lost (even one that comes back) and restarts from the group's commit
            self._set_owned(set(), set())
            self._owned_member = member_id
            self._version = -2
        try:
            current = groups.version(self._conn, self._group)
            if current == self._version and not force:
                return
            self._version = current
            held, revoking = groups.ownership(self._conn, self._group, member_id)
            if revoking:
                if self._on_revoke is not None:
                    self._on_revoke(sorted(self._sp(s) for s in revoking if s[0] in self._metas))
                groups.release(self._conn, self._group, member_id, revoking)
                fault_point("log.group.after_release")
                # The release bumped the version, so the next refresh reads ownership again.
                # Taking the version now instead would skip a partition another member handed
                # to this one after ``ownership`` above: it would stay held here, never polled.
        except sqlite3.Error as exc:
            raise self._error(exc, f"following group {self._group!r}") from exc
        self._set_owned(held - revoking, revoking)

    def _set_owned(self, owned: set[groups.Slot], revoked: set[groups.Slot]) -> None:
        owned = {s for s in owned if s[0] in self._metas}
        lost = set(self._positions) - owned - revoked
        if lost:
            log.warning("consumer lost partitions without revocation (its lease expired): %s",
                        ", ".join(str(self._sp(s)) for s in sorted(lost)))
        gained = owned - set(self._positions)
        for slot in set(self._positions) - owned:
            del self._positions[slot]
            self._buffers.pop(slot, None)
        if gained:
            self._positions.update(self._initial_positions(gained))
        self._owned = sorted(owned)
        if gained and self._on_assign is not None:
            self._on_assign(sorted(self._sp(s) for s in gained))

    def _initial_positions(self, slots: set[groups.Slot]) -> dict[groups.Slot, int]:
        try:
            committed: dict[groups.Slot, int] = {}
            if self._group is not None:
                committed = {
                    (s, p): o for s, p, o in self._conn.execute(
                        "SELECT stream_id, partition, next_offset FROM group_offsets "
                        "WHERE group_name=?", (self._group,))
                }
            ranges = self._ranges(slots)
        except sqlite3.Error as exc:
            raise self._error(exc, "reading committed offsets") from exc
        out = {}
        for slot in slots:
            start, end = ranges[slot]
            if slot in committed:
                out[slot] = committed[slot]
            else:
                out[slot] = start if self._reset == "earliest" else end
        return out

    def _ranges(self, slots: Iterable[groups.Slot]) -> dict[groups.Slot, tuple[int, int]]:
        return fetch.ranges(self._conn, slots)

    def assignment(self) -> list[StreamPartition]:
        return sorted(self._sp(s) for s in self._owned)

    # -- reading ------------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        self._check_open()
        check_poll(bool(self._streams), max_records, timeout)
        started = time.monotonic()
        if self._membership is not None:
            self._membership.last_poll = started
            if self._membership.member_id is None:
                self.subscribe(self._streams, on_assign=self._on_assign,
                               on_revoke=self._on_revoke)
        deadline = started + timeout
        sleep = 0.0002
        seen = -1
        while True:
            owned = self._owned
            self._refresh()
            if self._owned is not owned:
                seen = -1  # partitions were gained: read them even if no new data came
            try:
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                out = self._fetch(max_records) if version != seen else []
            except sqlite3.Error as exc:
                raise self._error(exc, "reading records") from exc
            if out:
                self._quiet_since = None
                return out
            seen = version
            now = time.monotonic()
            if self._quiet_since is None:
                self._quiet_since = now
            if now >= deadline:
                return out
            if now - self._ranges_at >= _RANGE_CHECK_S:
                self._ranges_at = now
                self._check_ranges()
            idle = now - self._quiet_since >= IDLE_AFTER_S
            if self._wakeup.wait(deadline - now, IDLE_SLEEP_S if idle else sleep):
                self._refreshed_at = 0.0  # a bell rang: its group may have changed
            sleep = min(sleep * 1.5, 0.001)

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0) -> RecordList:
        """``poll``'s records (already made by the read) as a batch, with their ends."""
        records = self.poll(max_records, timeout)
        return RecordList(records, ends_of(records, self._position_of, grouped=True))

    def _position_of(self, sp: StreamPartition) -> int:
        return self._positions[self._slot(sp)]

    def _fetch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        owned = self._owned
        n = len(owned)
        for i in range(n):
            slot = owned[(self._rr + i) % n]
            try:
                out.extend(self._read(slot, max_records - len(out)))
            except CorruptDataError:
                if not out:
                    raise
                break  # return what was read before the damage; a later poll raises
            if len(out) >= max_records:
                break
        if n:
            self._rr = (self._rr + 1) % n
        return out

    def _read(self, slot: groups.Slot, need: int) -> list[Record]:
        out: list[Record] = []
        buffered = self._buffers.pop(slot, None)
        if buffered is not None:
            records, index, end = buffered
            out = records[index:index + need]
            if index + need < len(records):
                self._buffers[slot] = (records, index + need, end)
                self._positions[slot] = out[-1].offset + 1
                return out
            self._positions[slot] = end
            if len(out) >= need:
                return out
        pos = self._positions[slot]
        self._positions[slot], rest = fetch.read_batches(
            self._conn, self._metas[slot[0]].name, slot, pos, out, need,
            lambda: self._check_start(slot, pos))
        if rest is not None:
            self._buffers[slot] = rest
        return out

    def _check_start(self, slot: groups.Slot, pos: int) -> None:
        row = self._conn.execute(
            "SELECT start_offset, next_offset FROM partitions WHERE stream_id=? AND partition=?",
            slot).fetchone()
        if row is not None and pos < row[0]:
            self._raise_expired(slot, pos, row[0], row[1])

    def _check_ranges(self) -> None:
        try:
            ranges = self._ranges(self._owned)
        except sqlite3.Error as exc:
            raise self._error(exc, "reading partition ranges") from exc
        for slot, (start, end) in ranges.items():
            pos = self._positions.get(slot)
            if pos is not None and pos < start:
                self._raise_expired(slot, pos, start, end)

    def _raise_expired(self, slot: groups.Slot, pos: int, start: int, end: int) -> None:
        sp = self._sp(slot)
        who = f"group {self._group!r}" if self._group else "this consumer"
        raise OffsetOutOfRangeError(
            f"{who} is at offset {pos} of {sp}, but retention removed records before {start} "
            f"(retained: {start}..{end - 1}); records {pos}..{start - 1} are gone — "
            f"seek_to_beginning() to continue from {start}, or reset the group "
            f"(`millstream groups reset {self._group or 'GROUP'} {sp.stream} --to earliest`)"
        )

    # -- positions and offsets ----------------------------------------------------------------

    def position(self, partition: StreamPartition) -> int:
        self._check_open()
        return self._positions[self._slot(partition)]

    def _targets(self, partitions: Iterable[StreamPartition] | None) -> list[groups.Slot]:
        self._check_open()
        self._refresh()
        if partitions is None:
            return list(self._owned)
        return [self._slot(sp) for sp in partitions]

    def seek(self, partition: StreamPartition, offset: int) -> None:
        slot = self._targets([partition])[0]
        check_offset(offset, partition)
        start, end = self._ranges([slot])[slot]
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {self._sp(slot)}'s retained range {start}..{end} "
                f"(the end, {end}, is where the next record will go); seek within it"
            )
        self._positions[slot] = offset
        self._buffers.pop(slot, None)

    def seek_to_beginning(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        slots = self._targets(partitions)
        for slot, (start, _) in self._ranges(slots).items():
            self._positions[slot] = start
            self._buffers.pop(slot, None)

    def seek_to_end(self, partitions: Iterable[StreamPartition] | None = None) -> None:
        slots = self._targets(partitions)
        for slot, (_, end) in self._ranges(slots).items():
            self._positions[slot] = end
            self._buffers.pop(slot, None)

    def seek_to_timestamp(self, timestamp_ms: int,
                          partitions: Iterable[StreamPartition] | None = None) -> None:
        check_timestamp(timestamp_ms)
        slots = self._targets(partitions)
        try:
            for slot in slots:
                self._positions[slot] = self._offset_for_time(slot, timestamp_ms)
                self._buffers.pop(slot, None)
        except sqlite3.Error as exc:
            raise self._error(exc, "seeking by time") from exc

    def _offset_for_time(self, slot: groups.Slot, ts_ms: int) -> int:
        found = fetch.offset_for_time(self._conn, slot, ts_ms, f"{self._sp(slot)}")
        return self._ranges([slot])[slot][1] if found is None else found

    def lag(self) -> dict[StreamPartition, int]:
        self._check_open()
        try:
            ranges = self._ranges(self._owned)
        except sqlite3.Error as exc:
            raise self._error(exc, "computing lag") from exc
        return {
            self._sp(s): max(end - self._positions[s], 0) for s, (_, end) in ranges.items()
        }

    def committed(self, partitions: Iterable[StreamPartition] | None = None
                  ) -> dict[StreamPartition, int | None]:
        self._check_open()
        wanted = list(partitions) if partitions is not None else self.assignment()
        if self._group is None:
            return dict.fromkeys(wanted)
        try:
            return committed_offsets(self._conn, self._group, wanted)
        except sqlite3.Error as exc:
            raise self._error(exc, "reading committed offsets") from exc

    def commit(self, offsets: Mapping[StreamPartition, int] | None = None) -> None:
        self._commit(offsets, None)

    def commit_with(self, offsets: Mapping[StreamPartition, int],
                    appends: Callable[[sqlite3.Connection], None]) -> None:
        """Commit ``offsets`` and run ``appends`` (which writes batch rows) in one write
        transaction, after the same fencing checks as ``commit``: a transaction's records
        become visible together with the group's progress, or not at all."""
        self._commit(offsets, appends)

    def _commit(self, offsets: Mapping[StreamPartition, int] | None,
                appends: Callable[[sqlite3.Connection], None] | None) -> None:
        self._check_open()
        if self._group is None or self._membership is None:
            raise InvalidRequestError(
                "this consumer has no group, so it cannot commit; open it with group=..."
            )
        member_id = self._membership.member_id
        if offsets is None:
            chosen = {s: self._positions[s] for s in self._owned}
        else:
            chosen = {}
            for sp, off in offsets.items():
                slot = self._slot(sp, owned=False)
                chosen[slot] = check_commit_offset(off, sp)
        if not chosen and appends is None:
            return
        try:
            commit_as_member(self._conn, self._group, member_id, self._owned_member, chosen,
                             self._sp, appends)
        except sqlite3.Error as exc:
            raise self._error(exc, "committing offsets") from exc

    # -- lifecycle ----------------------------------------------------------------------------

    def _leave(self) -> None:
        if self._group is None or self._membership is None or (
                self._membership.member_id is None):
            self._positions.clear()
            self._buffers.clear()
            self._owned = []
            return
        if self._on_revoke is not None and self._owned:
            self._on_revoke(self.assignment())  # it may commit: still a member
        member_id = self._membership.take()
        try:
            if member_id is not None:  # (else the heartbeat has just left for want of polls)
                groups.leave(self._conn, self._group, member_id)
        except sqlite3.Error as exc:
            raise self._error(exc, f"leaving group {self._group!r}") from exc
        finally:
            self._positions.clear()
            self._buffers.clear()
            self._owned = []

    def close(self) -> None:
        if self._closed:
            return
        # stop heartbeats first: one in flight after the leave would find the member row
        # gone and rejoin as a fresh member, holding partitions until its lease ran out
        if self._membership is not None:
            self._membership.stop()
        try:
            self._leave()
        finally:
            self._closed = True
            self._conn.close()
            self._wakeup.close()

    def __enter__(self) -> LocalConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
