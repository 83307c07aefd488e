"""The state of a stream–table join: each key's current row, and how far the table was read.

The shard keeps the row of each key of its partition under ``"t/<key>"`` (the packed value,
``_joining.Packer``) and, under ``"t@"``, the next offset of the table side's partition the
rows reflect. A service reads its two inputs interleaved, in no particular order between
them; so that a record is not joined against a table that simply was not read yet, the join
**reads the table side ahead** before the first stream-side record of each shard it runs
(``read_ahead``): every row up to the partition's end at that moment. A table record the
service's consumer delivers afterwards below ``"t@"`` is then one already applied
(``fresh``), and is skipped. After that, rows and records are applied as they come.
"""

from __future__ import annotations

import time
from typing import Any

from millstream.codecs import Codec
from millstream.errors import CorruptDataError
from millstream.records import StreamPartition
from millstream.runtime._joining import Packer, Shard, key_text
from millstream.streams._base import Streams

__all__ = ["ROW", "TableRows"]

#: the prefix of a row's shard key
ROW = "t/"
_NEXT = "t@"


class TableRows:
    """The rows of the table side ``table`` (read with ``codec``) in the shards."""

    __slots__ = ("_codec", "_packer", "_table", "_timeout")

    def __init__(self, table: str, codec: Codec[Any], *, timeout_s: float = 60.0) -> None:
        self._table = table
        self._codec = codec
        self._packer = Packer(codec)
        self._timeout = timeout_s

    def fresh(self, shard: Shard, offset: int) -> bool:
        """Whether the table record at ``offset`` (of the shard's partition) is not yet in
        the rows (else the read-ahead applied it)."""
        ahead = shard.get(_NEXT)
        return ahead is None or offset >= ahead

    def apply(self, shard: Shard, key: bytes, data: bytes | None,
              offset: int | None) -> None:
        """The row of ``key`` is now ``data`` (None: it has none); ``offset``: where the
        record was on the table's partition (None: a replay)."""
        name = ROW + key_text(key)
        if data is None:
            if name in shard:
                del shard[name]
        else:
            shard[name] = self._packer.pack(data)
        if offset is not None:
            shard[_NEXT] = offset + 1

    def row(self, shard: Shard, key: bytes) -> tuple[bool, Any]:
        """(found, decoded row) of ``key``."""
        stored = shard.get(ROW + key_text(key))
        if stored is None:
            return False, None
        return True, self._packer.unpack(stored)

    def read_ahead(self, streams: Streams, shard: Shard, number: int) -> int:
        """Apply the table side's records of partition ``number`` from ``"t@"`` (or its
        start) up to its end now; how many. A record the codec cannot read is left out (the
        service reports it when its consumer delivers it)."""
        partitions = streams.admin().describe_stream(self._table).partitions
        start, end = partitions[number].start, partitions[number].end
        ahead = shard.get(_NEXT)
        position = start if ahead is None else max(int(ahead), start)
        if position >= end:
            return 0
        sp = StreamPartition(self._table, number)
        applied = 0
        deadline = time.monotonic() + self._timeout
        with streams.open_consumer() as reader:
            reader.subscribe([self._table])
            reader.seek_to_end([StreamPartition(self._table, p) for p in range(len(partitions))
                                if p != number])
            reader.seek(sp, position)
            while reader.position(sp) < end:
                if time.monotonic() > deadline:
                    raise CorruptDataError(
                        f"could not read {self._table!r} partition {number} up to offset "
                        f"{end} within {self._timeout:g} s (reading the table side of a join "
                        "ahead)")
                for record in reader.poll(max_records=1000, timeout=0.2):
                    if record.partition != number or record.offset >= end:
                        continue
                    try:
                        self._codec.decode(record.value, record.headers)
                    except Exception:  # reported by the service when it reads it; not a row
                        shard[_NEXT] = record.offset + 1
                        continue
                    if record.key is None:  # no row to key (the service reports it)
                        shard[_NEXT] = record.offset + 1
                        continue
                    self.apply(shard, record.key, record.value, record.offset)
                    applied += 1
        shard[_NEXT] = max(end, int(shard.get(_NEXT, end)))
        return applied
