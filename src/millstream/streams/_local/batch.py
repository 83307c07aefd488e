"""The stored form of a batch of records: encoding, decoding and its CRC check.

A batch row's payload has one of two layouts, told apart by its first byte:

* **columns** (``FORMAT`` 1, for small values): ``marshal`` data ``(FORMAT, timestamps, keys,
  values, headers, offsets)``.
* **raw values** (``RAW_FORMAT`` 2, for batches whose values average ``RAW_VALUES_FROM`` bytes
  or more): the byte 2, the length of a header as 4 bytes little-endian, the header (``marshal``
  data ``(timestamps, keys, lengths, headers, offsets)``, ``lengths[i]`` -1 for a None value),
  then the values' bytes one after the other. ``marshal.dumps`` copies large values slowly
  (about 1 GB/s: it grows its buffer as it goes); a join of the values is one sized copy.

In both, the columns have equal length, ``headers`` is None when no record has any, ``offsets``
None when the offsets are dense (``base .. base + count - 1``; only compaction makes them
sparse). The CRC-32 covers the payload and the row's placement (stream id, partition, base
offset, count), so a damaged or misplaced row is caught before its payload is decoded.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from typing import Any

from millstream.errors import CorruptDataError
from millstream.records import Headers

__all__ = ["FORMAT", "RAW_FORMAT", "RAW_VALUES_FROM", "Decoded", "checksum", "decode", "encode",
           "encode_parts", "payload_crc"]

FORMAT = 1
RAW_FORMAT = 2
#: the average value size (bytes) from which a batch is stored with raw values
RAW_VALUES_FROM = 1024
_PLACE = struct.Struct("<qiqi")
_RAW_HEAD = struct.Struct("<BI")  # RAW_FORMAT, the header's length

Decoded = tuple[list[int], list[bytes | None], list[bytes | None], list[Headers] | None,
                list[int] | None]


def encode(
    timestamps: list[int],
    keys: list[bytes | None],
    values: list[bytes | None],
    headers: list[Headers] | None,
    offsets: list[int] | None = None,
) -> bytes:
    """The payload for one batch row (raw values when they are large, see the module doc)."""
    parts = encode_parts(timestamps, keys, values, headers, offsets)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def encode_parts(
    timestamps: list[int],
    keys: list[bytes | None],
    values: list[bytes | None],
    headers: list[Headers] | None,
    offsets: list[int] | None = None,
) -> list[bytes]:
    """The payload as the pieces it is made of, in order: large values are not copied (a
    segment file is written from the pieces, see ``_segments``)."""
    present = [v for v in values if v is not None]
    if sum(map(len, present)) < RAW_VALUES_FROM * len(values):
        return [marshal.dumps((FORMAT, timestamps, keys, values, headers, offsets), 4)]
    lengths = [-1 if v is None else len(v) for v in values]
    head = marshal.dumps((timestamps, keys, lengths, headers, offsets), 4)
    return [_RAW_HEAD.pack(RAW_FORMAT, len(head)) + head, *present]


def payload_crc(payload: bytes | list[bytes]) -> int:
    """CRC-32 of the payload alone (given whole or as its pieces); computed outside the write
    lock."""
    if isinstance(payload, bytes):
        return zlib.crc32(payload)
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    return crc


def checksum(crc_of_payload: int, stream_id: int, partition: int, base: int, count: int) -> int:
    """The stored CRC: the payload's CRC extended over the row's placement."""
    return zlib.crc32(_PLACE.pack(stream_id, partition, base, count), crc_of_payload)


def decode(
    payload: bytes, crc: int, stream_id: int, partition: int, base: int, count: int,
    where: str,
) -> Decoded:
    """Check the CRC and decode; raise ``CorruptDataError`` naming ``where`` on any damage."""
    actual = checksum(zlib.crc32(payload), stream_id, partition, base, count)
    if actual != crc:
        raise CorruptDataError(
            f"{where}: stored batch at offsets {base}..{base + count - 1} fails its CRC check "
            f"(stored {crc:#010x}, computed {actual:#010x}); the database file is damaged — "
            "stop its writers, keep a copy and restore from a backup"
        )
    try:
        if payload[:1] == b"\x02":
            return _decode_raw(payload, count, base, where)
        data: Any = marshal.loads(payload)
        ok = (
            type(data) is tuple and len(data) == 6 and data[0] == FORMAT
            and all(type(col) is list and len(col) == count for col in data[1:4])
            and (data[4] is None or (type(data[4]) is list and len(data[4]) == count))
            and (data[5] is None or (type(data[5]) is list and len(data[5]) == count))
        )
    except (ValueError, EOFError, TypeError, struct.error) as exc:
        raise CorruptDataError(
            f"{where}: batch at offsets {base}..{base + count - 1} cannot be decoded ({exc})"
        ) from exc
    if not ok:
        raise _unknown(where, base, count)
    return data[1], data[2], data[3], data[4], data[5]


def _decode_raw(payload: bytes, count: int, base: int, where: str) -> Decoded:
    """The raw-values layout: the header's columns, then each value sliced out of the payload
    (one copy per value, as ``marshal.loads`` makes)."""
    _, size = _RAW_HEAD.unpack_from(payload)
    at = _RAW_HEAD.size + size
    if at > len(payload):
        raise _unknown(where, base, count)
    data: Any = marshal.loads(memoryview(payload)[_RAW_HEAD.size:at])
    if not (
        type(data) is tuple and len(data) == 5
        and all(type(col) is list and len(col) == count for col in data[:3])
        and (data[3] is None or (type(data[3]) is list and len(data[3]) == count))
        and (data[4] is None or (type(data[4]) is list and len(data[4]) == count))
    ):
        raise _unknown(where, base, count)
    values: list[bytes | None] = []
    add = values.append
    for n in data[2]:
        if type(n) is not int or n < -1:
            raise _unknown(where, base, count)
        if n == -1:
            add(None)
        else:
            add(payload[at:at + n])
            at += n
    if at != len(payload):
        raise _unknown(where, base, count)
    return data[0], data[1], values, data[3], data[4]


def _unknown(where: str, base: int, count: int) -> CorruptDataError:
    return CorruptDataError(
        f"{where}: batch at offsets {base}..{base + count - 1} has an unknown layout; "
        "it was written by another program or version"
    )
