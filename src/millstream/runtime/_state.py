"""Service state: a key-value store per input partition, and its checkpoints.

State is sharded by partition *number*: a stateful service's inputs are co-partitioned (the
app refuses otherwise), so records about one key meet in one shard, and a shard moves with its
partition when the group rebalances. Values must be JSON-serialisable; assign them rather than
mutating nested objects in place, so a failed attempt's changes can be dropped.

Each handler attempt writes into an overlay (``Shard.begin``); the overlay is folded into the
shard only when the attempt succeeds, so a retried record never counts twice.

A checkpoint is one record on ``millstream.checkpoints`` (compacted), keyed
``<group>/<partition>``::

    {"group", "partition", "offsets": {"<stream>": next_offset, ...}, "state": {...},
     "time_ms", "records": n}

The offsets are those of the first records *not* reflected in the state; on restart the
runner loads the latest checkpoint and resumes every input partition of that number there.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from millstream._wellknown import CHECKPOINTS
from millstream.errors import CorruptDataError, InvalidRequestError
from millstream.files._base import FileRef, FileStore
from millstream.files._pins import Pins
from millstream.records import StreamPartition
from millstream.streams._base import Consumer, Producer, Streams

__all__ = ["INLINE_STATE_LIMIT", "Checkpoint", "CheckpointStore", "ServiceState", "Shard"]

#: State up to this size (JSON) travels inside the checkpoint record; larger goes to a file.
INLINE_STATE_LIMIT = 256 * 1024

_DELETED = object()


class Shard(MutableMapping[str, Any]):
    """The state of one partition number, with a per-attempt overlay."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = data or {}
        self._overlay: dict[str, Any] | None = None
        self.changed = False

    def begin(self) -> None:
        self._overlay = {}

    def keep(self) -> None:
        if self._overlay:
            for key, value in self._overlay.items():
                if value is _DELETED:
                    self.data.pop(key, None)
                else:
                    self.data[key] = value
            self.changed = True
        self._overlay = None

    def drop(self) -> None:
        self._overlay = None

    def __getitem__(self, key: str) -> Any:
        if self._overlay is not None and key in self._overlay:
            value = self._overlay[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise InvalidRequestError(f"state keys are strings, got {type(key).__name__}")
        if self._overlay is None:
            self.data[key] = value
            self.changed = True
        else:
            self._overlay[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if self._overlay is None:
            del self.data[key]
            self.changed = True
        else:
            self._overlay[key] = _DELETED

    def __contains__(self, key: object) -> bool:
        if self._overlay is not None and key in self._overlay:
            return self._overlay[key] is not _DELETED
        return key in self.data

    def _keys(self) -> set[str]:
        keys = set(self.data)
        if self._overlay:
            for key, value in self._overlay.items():
                if value is _DELETED:
                    keys.discard(key)
                else:
                    keys.add(key)
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys()))

    def __len__(self) -> int:
        return len(self._keys())


class Checkpoint:
    """A loaded checkpoint: state and the offsets it matches."""

    __slots__ = ("offsets", "records", "state", "time_ms")

    def __init__(self, offsets: dict[str, int], state: dict[str, Any], time_ms: int,
                 records: int) -> None:
        self.offsets = offsets
        self.state = state
        self.time_ms = time_ms
        self.records = records


class CheckpointStore:
    """Reads and writes one group's checkpoints on the checkpoints stream."""

    def __init__(self, streams: Streams, group: str, *, files: FileStore | None = None,
                 inline_limit: int = INLINE_STATE_LIMIT, pins: Pins | None = None) -> None:
        self._streams = streams
        self._group = group
        self._files = files
        self._pins = pins
        self._inline_limit = inline_limit
        self._prefix = f"{group}/".encode()
        self._latest: dict[int, Checkpoint] = {}
        self._position = 0

    def key(self, partition: int) -> bytes:
        return self._prefix + str(partition).encode()

    def refresh(self) -> None:
        """Read checkpoints written since the last refresh (by any instance of the group)."""
        info = self._streams.admin().describe_stream(CHECKPOINTS)
        part = info.partitions[0]
        start = max(self._position, part.start)
        if start >= part.end:
            return
        with self._streams.open_consumer() as reader:
            reader.subscribe([CHECKPOINTS])
            sp = StreamPartition(CHECKPOINTS, 0)
            reader.seek(sp, start)
            deadline = time.monotonic() + 30
            while reader.position(sp) < part.end:
                if time.monotonic() > deadline:
                    raise CorruptDataError(
                        f"could not read {CHECKPOINTS} up to offset {part.end} within 30 s"
                    )
                for record in reader.poll(max_records=1000, timeout=0.5):
                    key = record.key or b""
                    if not key.startswith(self._prefix):
                        continue
                    number = int(key[len(self._prefix):])
                    if record.value is None:
                        self._latest.pop(number, None)
                        continue
                    self._latest[number] = self._parse(record.value, key)
        self._position = part.end

    def _parse(self, value: bytes, key: bytes) -> Checkpoint:
        try:
            doc = json.loads(value)
            state = doc["state"]
            if state is None and doc.get("state_ref") is not None:
                state = self._load_state(FileRef.model_validate(doc["state_ref"]), key)
            return Checkpoint({str(k): int(v) for k, v in doc["offsets"].items()},
                              dict(state), int(doc["time_ms"]), int(doc["records"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptDataError(
                f"checkpoint {key.decode(errors='replace')!r} on {CHECKPOINTS} is not valid: "
                f"{exc}; delete the group's checkpoints to restart its state from scratch"
            ) from exc

    def latest(self, partition: int) -> Checkpoint | None:
        return self._latest.get(partition)

    def _load_state(self, ref: FileRef, key: bytes) -> Any:
        if self._files is None:
            raise CorruptDataError(
                f"checkpoint {key.decode(errors='replace')!r} keeps its state in the file store "
                f"({ref.url}), but this service runs without one; give it the platform's files")
        return json.loads(self._files.read_bytes(ref))

    def encode(self, partition: int, offsets: dict[str, int], state: dict[str, Any],
               records: int) -> bytes:
        """The checkpoint record; state larger than the inline limit goes to the file store
        (named by its hash, so an unchanged state is stored once) and the record keeps the
        reference; the object is pinned until the caller releases ``pins``."""
        try:
            body = json.dumps(state, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the state of {self._group} partition {partition} is not JSON-serialisable "
                f"({exc}); store only JSON values (str, int, float, bool, None, list, dict)"
            ) from exc
        head = {"group": self._group, "partition": partition, "offsets": offsets,
                "time_ms": int(time.time() * 1000), "records": records}
        if len(body) <= self._inline_limit:
            return (json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"state":'
                    + body + b"}")
        if self._files is None:
            raise InvalidRequestError(
                f"the state of {self._group} partition {partition} is {len(body)} bytes, over "
                f"the {self._inline_limit}-byte inline limit, and the service has no file "
                "store to keep it in; run it with the platform's files")
        name = (f"{self._group}/checkpoints/{partition}/"
                f"{hashlib.sha256(body).hexdigest()}.json")
        if self._pins is not None:  # held until the checkpoint record is durable
            self._pins.hold(name, sent=True)
        ref = self._files.put(name, body, content_type="application/json")
        return json.dumps({**head, "state": None, "state_ref": ref.model_dump()},
                          separators=(",", ":")).encode()

    def write(self, producer: Producer, partition: int, offsets: dict[str, int],
              state: dict[str, Any], records: int) -> None:
        """Store a checkpoint and wait until it is durable."""
        value = self.encode(partition, offsets, state, records)
        producer.send(CHECKPOINTS, value, key=self.key(partition)).wait()
        self.remember(partition, offsets, state, records)

    def remember(self, partition: int, offsets: dict[str, int], state: dict[str, Any],
                 records: int) -> None:
        """Note a checkpoint this instance stored (directly or in a transaction)."""
        self._latest[partition] = Checkpoint(dict(offsets), dict(state),
                                             int(time.time() * 1000), records)


class ServiceState:
    """A stateful service's shards, by partition number, and where they were checkpointed.

    ``done`` is the runner's progress (next offset per input partition), shared: a shard's
    offsets are read from it, and a shard loaded from a checkpoint moves it there.
    """

    def __init__(self, store: CheckpointStore, inputs: tuple[str, ...],
                 done: dict[tuple[str, int], int]) -> None:
        self.store = store
        self.inputs = inputs
        self.shards: dict[int, Shard] = {}
        #: records handled since the last checkpoint (counted by the runner)
        self.since_checkpoint = 0
        self._done = done

    def numbers(self, partitions: Iterable[StreamPartition]) -> set[int]:
        """The shard numbers of those of ``partitions`` that are inputs."""
        return {sp.partition for sp in partitions if sp.stream in self.inputs}

    def offsets(self, number: int) -> dict[str, int]:
        """Shard ``number``'s progress: the next offset of each input it has read."""
        done = self._done
        return {s: done[s, number] for s in self.inputs if (s, number) in done}

    def load(self, partitions: list[StreamPartition], consumer: Consumer) -> None:
        """Load the shards of newly assigned partitions from their latest checkpoints and
        move the consumer (and the progress) to the offsets those match."""
        self.store.refresh()
        for number in sorted(self.numbers(partitions)):
            latest = self.store.latest(number)
            self.shards[number] = Shard(dict(latest.state) if latest else {})
            if latest is None:
                continue
            for sp in partitions:
                if sp.partition == number and sp.stream in latest.offsets:
                    consumer.seek(sp, latest.offsets[sp.stream])
                    self._done[sp.stream, number] = latest.offsets[sp.stream]

    def drop(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self.shards.pop(number, None)
