"""The stored form of a batch of records: encoding, decoding and its CRC check.

A batch row's payload is ``marshal`` data ``(FORMAT, timestamps, keys, values, headers,
offsets)``: columns of equal length, ``headers`` None when no record has any, ``offsets`` None
when the offsets are dense (``base .. base + count - 1``; only compaction makes them sparse).
The CRC-32 covers the payload and the row's placement (stream id, partition, base offset,
count), so a damaged or misplaced row is caught before its payload is decoded.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from typing import Any

from millstream.errors import CorruptDataError
from millstream.records import Headers

__all__ = ["FORMAT", "Decoded", "checksum", "decode", "encode", "payload_crc"]

FORMAT = 1
_PLACE = struct.Struct("<qiqi")

Decoded = tuple[list[int], list[bytes | None], list[bytes | None], list[Headers] | None,
                list[int] | None]


def encode(
    timestamps: list[int],
    keys: list[bytes | None],
    values: list[bytes | None],
    headers: list[Headers] | None,
    offsets: list[int] | None = None,
) -> bytes:
    """The payload for one batch row."""
    return marshal.dumps((FORMAT, timestamps, keys, values, headers, offsets), 4)


def payload_crc(payload: bytes) -> int:
    """CRC-32 of the payload alone; computed outside the write lock."""
    return zlib.crc32(payload)


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
        data: Any = marshal.loads(payload)
        ok = (
            type(data) is tuple and len(data) == 6 and data[0] == FORMAT
            and all(type(col) is list and len(col) == count for col in data[1:4])
            and (data[4] is None or (type(data[4]) is list and len(data[4]) == count))
            and (data[5] is None or (type(data[5]) is list and len(data[5]) == count))
        )
    except (ValueError, EOFError, TypeError) as exc:
        raise CorruptDataError(
            f"{where}: batch at offsets {base}..{base + count - 1} cannot be decoded ({exc})"
        ) from exc
    if not ok:
        raise CorruptDataError(
            f"{where}: batch at offsets {base}..{base + count - 1} has an unknown layout; "
            "it was written by another program or version"
        )
    return data[1], data[2], data[3], data[4], data[5]
