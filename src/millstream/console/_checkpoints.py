"""A stateful service's state size, as its checkpoints on ``millstream.checkpoints`` say.

Every checkpoint record (keyed ``<group>/<partition>``) holds one partition's state as JSON,
or, past the inline limit, a reference to it in the file store with its size. ``StateSizes``
reads the stream incrementally (from where it stopped, at most ``max_scan`` records a call)
and keeps, per group and partition, the newest checkpoint's size: the state's JSON bytes
(re-encoded compactly, as the runtime writes it) and top-level keys, or the stored file's
size (keys unknown without reading the file, which this does not do).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from millstream._wellknown import CHECKPOINTS
from millstream.errors import UnknownStreamError
from millstream.records import StreamPartition
from millstream.streams._base import Streams

__all__ = ["PartitionState", "StateSizes"]


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's newest checkpoint: its state's size, when it was taken."""

    partition: int
    bytes: int
    #: top-level keys in the state; None when the state is in the file store
    keys: int | None
    time_ms: int
    #: True when the state is kept in the file store (over the inline limit)
    in_files: bool


class StateSizes:
    """The newest checkpoint size of every group's partitions, read incrementally."""

    def __init__(self, *, max_scan: int = 100_000) -> None:
        self.max_scan = max_scan
        self._position = 0
        self._sizes: dict[str, dict[int, PartitionState]] = {}
        self._lock = threading.Lock()
        #: True while the last ``refresh`` stopped before the stream's end
        self.behind = False

    def of(self, group: str) -> list[PartitionState]:
        """``group``'s partitions with a checkpoint, by partition number (empty if none)."""
        with self._lock:
            return [state for _, state in sorted(self._sizes.get(group, {}).items())]

    def refresh(self, streams: Streams) -> int:
        """Read what was written since the last call (at most ``max_scan`` records); returns
        how many were read. No checkpoints stream (no stateful service has run) reads none."""
        with self._lock:
            try:
                info = streams.admin().describe_stream(CHECKPOINTS)
            except UnknownStreamError:
                return 0
            part = info.partitions[0]
            start = max(self._position, part.start)
            stop = min(part.end, start + self.max_scan)
            self.behind = stop < part.end
            if start >= stop:
                return 0
            sp = StreamPartition(CHECKPOINTS, 0)
            read = 0
            with streams.open_consumer() as reader:
                reader.subscribe([CHECKPOINTS])
                reader.seek(sp, start)
                while reader.position(sp) < stop:
                    batch = reader.poll(max_records=min(1000, stop - reader.position(sp)),
                                        timeout=1.0)
                    if not batch:
                        break
                    for record in batch:
                        if record.offset < stop:
                            self._take(record.key, record.value)
                            read += 1
                self._position = min(reader.position(sp), stop)
            return read

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        group, _, number = (key or b"").decode(errors="replace").rpartition("/")
        if not group or not number.isdecimal():
            return
        partition = int(number)
        if value is None:  # a tombstone: the checkpoint was deleted
            self._sizes.get(group, {}).pop(partition, None)
            return
        try:
            doc = json.loads(value)
            state = doc.get("state")
            ref = doc.get("state_ref")
            time_ms = int(doc.get("time_ms", 0))
            if state is None and isinstance(ref, dict):
                size = PartitionState(partition, int(ref["size"]), None, time_ms, True)
            elif isinstance(state, dict):
                body = json.dumps(state, separators=(",", ":"))
                size = PartitionState(partition, len(body.encode()), len(state), time_ms, False)
            else:
                return
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not a checkpoint this millstream reads: nothing to say about its size
        self._sizes.setdefault(group, {})[partition] = size
