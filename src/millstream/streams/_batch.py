"""A ``RecordBatch`` over records already made: the embedded log's (its read builds them),
and any wrapper's that changes records (the claim-check). Columns are read in C (``map``
with an ``itemgetter`` over the records), and ``ends_of`` finds the partitions a batch holds
without a per-record Python frame."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter

from millstream.records import Headers, Position, Record, StreamPartition

__all__ = ["RecordList", "ends_of"]

_new = tuple.__new__
_stream, _partition, _offset, _timestamp, _key, _value, _headers = map(itemgetter, range(7))
_where = itemgetter(0, 1)


class RecordList:
    """A ``RecordBatch`` (``millstream.streams._base``) holding its records in a list.

    ``ends`` is taken when the batch is made (the consumer's positions move on with the next
    poll); ``ends()`` returns a copy, as every column call returns a new list."""

    __slots__ = ("_ends", "_records")

    def __init__(self, records: list[Record], ends: dict[StreamPartition, int]) -> None:
        self._records = records
        self._ends = ends

    def __len__(self) -> int:
        return len(self._records)

    def __bool__(self) -> bool:
        return bool(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __getitem__(self, index: int) -> Record:
        return self._records[index]

    def __repr__(self) -> str:
        return f"<RecordList of {len(self._records)} records, ends {self._ends}>"

    def values(self) -> list[bytes | None]:
        return list(map(_value, self._records))

    def keys(self) -> list[bytes | None]:
        return list(map(_key, self._records))

    def headers(self) -> list[Headers]:
        return list(map(_headers, self._records))

    def timestamps(self) -> list[int]:
        return list(map(_timestamp, self._records))

    def streams(self) -> list[str]:
        return list(map(_stream, self._records))

    def partitions(self) -> list[int]:
        return list(map(_partition, self._records))

    def offsets(self) -> list[int]:
        return list(map(_offset, self._records))

    def positions(self) -> list[Position]:
        records = self._records
        return list(map(_new, repeat(Position), zip(
            map(_stream, records), map(_partition, records), map(_offset, records), strict=True)))

    def ends(self) -> dict[StreamPartition, int]:
        return dict(self._ends)


def ends_of(records: list[Record], position: Callable[[StreamPartition], int], *,
            grouped: bool = False) -> dict[StreamPartition, int]:
    """``position(partition)`` for each partition that has a record in ``records``.
    ``grouped``: each partition's records are together (as the embedded log reads them), so
    a batch whose first and last record share a partition holds that one only."""
    if not records:
        return {}
    first = _where(records[0])
    if grouped and _where(records[-1]) == first:
        wheres = [first]
    else:
        wheres = list(dict.fromkeys(map(_where, records)))
    return {sp: position(sp) for sp in map(_new, repeat(StreamPartition), wheres)}
